# syntax=docker/dockerfile:1
# One image for the three Conveyor services (and conveyorctl); the command picks the service:
#   docker run IMAGE conveyor-config | conveyor-trigger | conveyor-deployer
# Runtime dependencies only (no dev or sandbox extras: no kmock), pinned by constraints.txt; runs as a non-root user.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/src/constraints.txt
WORKDIR /src
RUN python -m venv /opt/conveyor
COPY constraints.txt pyproject.toml README.md ./
# Dependencies first, from pyproject's list: this layer is reused while only the code changes.
RUN /opt/conveyor/bin/pip install -c constraints.txt pip \
 && python -c 'import shlex, tomllib; print(shlex.join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    | xargs /opt/conveyor/bin/pip install -c constraints.txt
COPY src ./src
COPY services ./services
RUN /opt/conveyor/bin/pip install -c constraints.txt --no-deps . \
 && /opt/conveyor/bin/pip check

FROM python:3.11-slim
RUN groupadd --system --gid 10001 conveyor \
 && useradd --system --uid 10001 --gid conveyor --home-dir /var/lib/conveyor --no-create-home \
            --shell /usr/sbin/nologin conveyor \
 && install -d -o conveyor -g conveyor -m 0750 /var/lib/conveyor
COPY --from=build /opt/conveyor /opt/conveyor
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONVEYOR_DATA_DIR=/var/lib/conveyor \
    CONVEYOR_LOG_FORMAT=json
WORKDIR /var/lib/conveyor
USER 10001:10001
# config gRPC, trigger gRPC, deployer gRPC, trigger webhooks
EXPOSE 50051 50052 50053 8080
CMD ["conveyor-config"]
