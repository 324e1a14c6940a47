# m365connect: the HTTP service. Build: docker build -t m365connect .  (docs/operations.md)
# Installs exactly the pinned versions of constraints.txt into a virtual environment, then copies only that
# environment into the final image, which runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN python -m venv /opt/m365connect \
    && /opt/m365connect/bin/pip install -c constraints.txt .

FROM python:3.11-slim
ENV PATH=/opt/m365connect/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 m365connect \
    && useradd --system --uid 10001 --gid m365connect --home-dir /var/lib/m365connect --create-home \
       --shell /usr/sbin/nologin m365connect
COPY --from=build /opt/m365connect /opt/m365connect
# The working directory holds the SQLite file and the generated key file when no PostgreSQL URL and no
# M365CONNECT_ENCRYPTION_KEYS are given (mount a volume there to keep them).
WORKDIR /var/lib/m365connect
USER m365connect:m365connect
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["m365connect", "serve", "--host", "0.0.0.0"]
