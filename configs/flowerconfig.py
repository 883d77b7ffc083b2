"""Flower settings for `reelbatch flower` (Flower reads this file with --conf).

Left out on purpose, so the environment decides them: basic_auth (FLOWER_BASIC_AUTH), address and port
(command-line options). Everything Flower shows comes from task events: task names are
reelbatch.<verb> and arguments are [batch, item_id], never keys.
"""

import os

# In memory only: reelbatch's state store is the record; a Flower restart starts empty.
persistent = False
state_save_interval = 0

# Bounded memory on long nights: the oldest tasks and vanished workers are forgotten.
max_tasks = 10000
max_workers = 200
purge_offline_workers = 600

# Watch, don't steer: no pool restarts or shutdowns from the web page (`reelbatch cancel` stops a batch).
read_only = True

# Item ids on the tasks page.
tasks_columns = "name,uuid,state,args,received,started,runtime,worker"

# Serve under a path behind a reverse proxy, e.g. FLOWER_URL_PREFIX=flower.
url_prefix = os.environ.get("FLOWER_URL_PREFIX", "")
