# The trigger.dev webapp stand-in (scripts/webapp_standin.py) for docker/compose.yml: Python and psql,
# nothing else. It serves GET/PUT /api/v1/packets/<file> (offloaded payloads) and the presigned object
# URLs it hands out, and a JSON 404 for every other webapp path. Against a real trigger.dev deployment,
# point nginx's trigger_webapp upstream at its webapp instead.
#
#   docker build -f docker/webapp-standin.Dockerfile -t runfeed-webapp-standin .   (from the repository root)
FROM python:3.12-slim-bookworm
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin standin \
    && install -d -o standin -g standin /objects
COPY scripts/webapp_standin.py /usr/local/bin/webapp_standin.py
USER standin
EXPOSE 3030
ENTRYPOINT ["python3", "/usr/local/bin/webapp_standin.py"]
# Credentials are checked in the database named by DATABASE_URL.
CMD ["serve", "--listen", "0.0.0.0:3030", "--objects", "/objects"]
