# One image for every reelbatch service (worker, scheduler, flower, simulator): see docker-compose.yml.
#
#   scripts/wheelhouse && docker build -t reelbatch:local .
#
# reelbatch and its pinned dependencies are installed from wheelhouse/ (scripts/wheelhouse builds it on the
# host from constraints.txt), offline: the build needs no package index and no CA of any proxy. The build
# context is that folder only (.dockerignore). No secrets are baked in: keys, passwords and the broker URL
# arrive as environment variables at run time.
ARG REELBATCH_BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${REELBATCH_BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/reelbatch/bin:$PATH

RUN useradd --create-home --uid 10001 --user-group reelbatch

# A virtual environment works on any Debian-like base with python3 and venv (the official image or a
# local debootstrap one); the example manifests come from the installed package, not the context.
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/reelbatch \
    && /opt/reelbatch/bin/pip install -q --no-index --find-links /tmp/wheelhouse reelbatch \
    && rm -rf /tmp/wheelhouse \
    && mkdir -p /work/examples \
    && cp /opt/reelbatch/lib/python3*/site-packages/reelbatch/jobs/examples/*.* /work/examples/ \
    && chown -R reelbatch:reelbatch /work

# /work is the shared `output` volume in compose: manifests go here, results land under it.
WORKDIR /work
USER reelbatch

EXPOSE 5555 8765
ENTRYPOINT ["reelbatch"]
CMD ["worker"]
