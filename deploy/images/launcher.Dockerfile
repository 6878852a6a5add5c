# Flex Template launcher image: Google's Python 3.11 launcher base with this project installed.
# Built once per pipeline (PIPELINE=batch or streaming) by deploy/cloudbuild.yaml, which passes
# BEAM_VERSION from pyproject.toml. Pin LAUNCHER_TAG to a dated tag for reproducible builds.
ARG LAUNCHER_TAG=latest
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG}
ARG BEAM_VERSION
ARG PIPELINE
RUN test -n "${BEAM_VERSION}" && { test "${PIPELINE}" = batch || test "${PIPELINE}" = streaming; }

WORKDIR /template
COPY pyproject.toml README.md ./
COPY pipelines/ pipelines/
COPY schemas/ schemas/
COPY tools/ tools/
COPY transforms/ transforms/
COPY deploy/flex/main.py deploy/flex/main.py

# The launcher builds the job graph with the same code and Beam version as the workers run.
RUN pip install --no-cache-dir . \
    && python -c "import sys, apache_beam; sys.exit(apache_beam.__version__ != '${BEAM_VERSION}')" \
    && pip check

ENV PAYMENTS_PIPELINE=${PIPELINE}
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/deploy/flex/main.py
# No FLEX_TEMPLATE_PYTHON_SETUP_FILE or FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE: the project is
# installed here and in the worker image (passed as sdk_container_image), so nothing is
# packaged, staged or pip-installed at launch or on the workers.

# No secret and no key in this image: the launcher reads the key from Secret Manager at launch
# (deploy/flex/main.py, deploy/IAM.md).
