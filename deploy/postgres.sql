-- The cluster's PostgreSQL (Debian's package on the head): the Dagster instance's database and the lake's catalog.
-- Run as the postgres superuser: psql -v pw="'<password>'" -f deploy/postgres.sql ; then allow the cluster's subnet
-- in pg_hba.conf (scram-sha-256) and listen_addresses. Hosts read the password from PGPASSWORD / DAGSTER_PG_URL in
-- /etc/autointerp/secrets.env only.
CREATE ROLE autointerp LOGIN PASSWORD :pw;
CREATE DATABASE dagster OWNER autointerp;
CREATE DATABASE autointerp_lake OWNER autointerp;
