# Two images from one recipe, both with the package and the committed model/:
#   serve (the default target): what the Deployment runs, MLflow's scoring app behind the gateway
#     (chaos_pyfunc/http/gateway.py) on port 8080, with the serving lock only (requirements-serve.lock).
#   jobs: serve plus training, retraining and drift (requirements.lock, requirements-drift.lock, a
#     C compiler), what the nightly CronJobs and CI's unit-tests job run. Built on serve, so it is
#     a superset by construction and shares its layers in the registry and on the nodes.
# Code ships in the images, models through the registry: the pods set
# CHAOS_MODEL_URI=models:/chaos-appetence/<N>; without it they use the baked-in model/.
# Build (see `make image`):
#   docker build --target serve|jobs --build-arg GIT_COMMIT=… --build-arg MODEL_VERSION=… .
ARG BASE_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7:the base is a build argument (tests build on a local Debian base); its default is the python:3.11-slim version tag
FROM ${BASE_IMAGE} AS runtime

# tini is PID 1: a bare Python PID 1 gets no default signal handling and reaps no zombies;
# tini forwards SIGTERM to uvicorn, which drains the requests in flight, then exits.
# The version follows the base image's Debian release, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --gid 10001 chaos \
 && useradd --uid 10001 --gid chaos --home-dir /tmp --no-create-home --shell /usr/sbin/nologin chaos
ENV HOME=/tmp
# tini is PID 1 in every image (see above): it forwards SIGTERM to the server.
ENTRYPOINT ["tini", "-g", "--"]

# The model registry (k8s/registry, `docker build --target registry`): MLflow's server (full mlflow,
# from the same lock as the jobs image), plus the GCS client for its artifacts bucket.
# Dependencies come first in every image, in their own layer, from a lock: a code or model change
# reuses it. The pipca secret is for builds behind a TLS-inspecting proxy; it never lands in a layer.
FROM runtime AS registry
COPY requirements.lock requirements-registry.lock /tmp/
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi \
 && python3 -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir -r /tmp/requirements.lock \
 && pip install --no-cache-dir --no-deps -r /tmp/requirements-registry.lock \
 && rm /tmp/requirements.lock /tmp/requirements-registry.lock
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=2)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]

# The serving image's content; the target `serve` at the end names it.
FROM runtime AS app
# The packages' own test suites (about 130 MB) go in the layer that installs them, or the image
# would still carry them; so does setuptools, which nothing imports at run time (pip builds the
# package below in an isolated environment). pip stays: the package layer needs it.
COPY requirements-serve.lock /tmp/requirements-serve.lock
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi \
 && python3 -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --no-deps -r /tmp/requirements-serve.lock \
 && pip uninstall --yes setuptools \
 && find "$VIRTUAL_ENV/lib" -type d -name tests -prune -exec rm -rf {} + \
 && rm /tmp/requirements-serve.lock
# The package (the `chaos` command) and the model the server runs.
WORKDIR /app
COPY pyproject.toml ./
COPY chaos_pyfunc ./chaos_pyfunc
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi \
 && pip install --no-cache-dir --no-deps . \
 && rm -rf build ./*.egg-info
COPY model ./model

ARG GIT_COMMIT=unknown
ARG MODEL_VERSION=unknown
LABEL org.opencontainers.image.title="chaos" \
      org.opencontainers.image.description="Appetence scoring: MLflow pyfunc enriched live from socio_eco" \
      org.opencontainers.image.licenses="CC-BY-4.0 (data)" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      io.chaos.model.name="chaos-appetence" \
      io.chaos.model.version="${MODEL_VERSION}"

# One uvicorn process per container (`chaos serve` runs no launcher and no worker pool):
# scale with replicas.
ENV CHAOS_MODEL_URI=/app/model
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/ping', timeout=2)"]
CMD ["chaos", "serve", "--host", "0.0.0.0", "--port", "8080"]

# The nightly jobs' image (`--target jobs`): serve plus what training and drift need. The
# CronJobs set their own command.
FROM app AS jobs-content
USER 0:0
# A C compiler: `chaos train` compiles the trees of a new version to C (compiled.py). Same release
# rule as tini above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# The full lock (mlflow, matplotlib, pyarrow… beside the serving pins, which it repeats) and
# Evidently, for `chaos drift`; Evidently never phones home.
ENV DO_NOT_TRACK=1
COPY requirements.lock requirements-drift.lock /tmp/
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi \
 && pip install --no-cache-dir -r /tmp/requirements.lock \
 && pip install --no-cache-dir --no-deps -r /tmp/requirements-drift.lock \
 && rm /tmp/requirements.lock /tmp/requirements-drift.lock
USER 10001:10001
CMD ["chaos", "--help"]

# Each target an empty stage on its content: podman 4.3, finding every instruction of a stage in
# its cache, reuses that image as it is, with the labels of the commit that built it first; an
# empty stage is committed anew, with this build's --label (the commit, the model version).
FROM jobs-content AS jobs

# The default target, last: the serving image.
FROM app AS serve
