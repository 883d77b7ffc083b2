# One image for every reelbatch service (worker, scheduler, flower, simulator): see docker-compose.yml.
# No secrets are baked in: keys, passwords and the broker URL arrive as environment variables at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group reelbatch

# Only the package sources are copied (never .env, .git or local output).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobs/ jobs/
COPY worker/ worker/
COPY scheduler/ scheduler/
COPY simulator/ simulator/
COPY configs/ configs/
COPY reelbatch/ reelbatch/
RUN pip install . \
    && mkdir -p /work/examples \
    && cp jobs/examples/* /work/examples/ \
    && chown -R reelbatch:reelbatch /work \
    && rm -rf /src

# /work is the shared `output` volume in compose: manifests go here, results land under it.
WORKDIR /work
USER reelbatch

EXPOSE 5555 8765
ENTRYPOINT ["reelbatch"]
CMD ["worker"]
