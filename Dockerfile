# The worker image: the `metering` wheel and the pins of requirements.lock that it needs at
# run time (no pytest, mypy, ruff or testcontainers), run as an unprivileged user.
#   docker build -t metering .     # or `docker compose up`, which builds it

# Build stage: the full lock is installed only to read the packages' requirements, from
# which scripts/runtime-lock keeps the runtime pins; this stage is then thrown away.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /dist . \
 && pip install --no-cache-dir --no-deps /dist/metering-*.whl \
 && python scripts/runtime-lock requirements.lock > /dist/runtime.lock

FROM python:3.11-slim
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/dist/runtime.lock \
 && pip install --no-cache-dir --no-deps /tmp/dist/metering-*.whl \
 && pip check \
 && rm -rf /tmp/dist \
 && useradd --system --uid 10001 --home-dir /var/lib/metering --create-home metering
# Writable by the worker: Faust's data dir is <state dir>/worker/<app id>.
ENV METERING_STATE_DIR=/var/lib/metering
WORKDIR /var/lib/metering
USER 10001
EXPOSE 6066
CMD ["metering", "worker"]
