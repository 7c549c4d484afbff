# The robustness-gate operator image: `docker build -t robustness-gate:dev .`
# The Helm chart (charts/robustness-gate) runs it as user 10001 with a read-only root filesystem.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/robustness-gate \
 && /opt/robustness-gate/bin/pip install . \
 && /opt/robustness-gate/bin/python -m compileall -q /opt/robustness-gate

FROM python:3.11-slim
ENV PATH=/opt/robustness-gate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 robustness-gate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin robustness-gate
COPY --from=build /opt/robustness-gate /opt/robustness-gate
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["robustness-gate"]
CMD ["run", "--http-address=0.0.0.0:8080", "--metrics-address=0.0.0.0:9090"]
