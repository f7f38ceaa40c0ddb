# The daedalus system user (and group), created before the files that name it are installed.
getent group daedalus >/dev/null || groupadd --system daedalus
getent passwd daedalus >/dev/null || useradd --system --gid daedalus --home-dir /var/lib/daedalus --no-create-home \
    --shell /sbin/nologin --comment "Daedalus sidecar for Apache Cassandra" daedalus
# In Cassandra's group, when there is one, to read the data directories that backups upload from.
if getent group cassandra >/dev/null; then usermod --append --groups cassandra daedalus; fi
exit 0
