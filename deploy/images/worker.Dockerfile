# Worker (SDK container) image of both Dataflow jobs: Apache Beam's own Python 3.11 SDK image at
# the version pinned in pyproject.toml, with this project installed, so workers install nothing
# at start-up. Built by deploy/cloudbuild.yaml, which passes BEAM_VERSION from pyproject.toml.
ARG BEAM_VERSION
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}
ARG BEAM_VERSION

WORKDIR /opt/payments
COPY pyproject.toml README.md ./
COPY pipelines/ pipelines/
COPY schemas/ schemas/
COPY tools/ tools/
COPY transforms/ transforms/

# Installing the project must not move Beam off the base image's version: the SDK harness
# (/opt/apache/beam/boot, the image's entrypoint) and the Python SDK have to match.
RUN pip install --no-cache-dir . \
    && python -c "import sys, apache_beam; sys.exit(apache_beam.__version__ != '${BEAM_VERSION}')" \
    && pip check

# No secret and no key in this image: see deploy/IAM.md.
