-- psymon's database roles (production form, docker-compose.yml).
--
-- The TimescaleDB image runs this once, as its superuser, connected to POSTGRES_DB
-- (psymon), the first time it starts on an empty data volume; its own scripts
-- (000_install_timescaledb.sh ...) have already created the timescaledb extension.
-- It is a psql script: the passwords come from the container's environment through
-- \getenv, so they appear neither in this file nor on a command line.
--
--   psymon          owns the database and its public schema; every psymon service
--                   (migrate, sink, worker, api) connects as it.
--   psymon_grafana  Grafana's login: it may connect and SELECT, nothing else. No
--                   INSERT/UPDATE/DELETE/TRUNCATE, no CREATE (not even TEMP tables),
--                   no EXECUTE on psymon's functions, and read-only transactions by
--                   default.
--
-- Running it again on an existing database is safe and sets the passwords anew:
--   docker compose exec -T timescaledb \
--     psql -v ON_ERROR_STOP=1 -U postgres -d psymon -f /docker-entrypoint-initdb.d/100_psymon_roles.sql

\set ON_ERROR_STOP on
\getenv owner_password DB_PSYMON_PASSWORD
\getenv grafana_password DB_GRAFANA_PASSWORD

\if :{?owner_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'DB_PSYMON_PASSWORD is not set in the environment of the timescaledb container; set it in .env (see .env.example)'; END $$;
\endif
\if :{?grafana_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'DB_GRAFANA_PASSWORD is not set in the environment of the timescaledb container; set it in .env (see .env.example)'; END $$;
\endif

-- The owner role. No superuser, no role or database creation: a compromised service
-- reaches psymon's data and nothing else on the server.
SELECT 'CREATE ROLE psymon' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'psymon') \gexec
ALTER ROLE psymon WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';

-- The read-only role Grafana logs in as.
SELECT 'CREATE ROLE psymon_grafana' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'psymon_grafana') \gexec
ALTER ROLE psymon_grafana WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD :'grafana_password';
-- Defaults, not a security boundary (a session may change them); the grants below are.
ALTER ROLE psymon_grafana SET default_transaction_read_only = on;
ALTER ROLE psymon_grafana SET statement_timeout = '60s';

-- psymon owns the database, and so (PostgreSQL 15+: pg_database_owner) its public
-- schema, where the migrations (`psymon db migrate`) create tables and views.
ALTER DATABASE :"DBNAME" OWNER TO psymon;

-- Nobody else may connect or create temporary tables, unless granted below.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT CONNECT ON DATABASE :"DBNAME" TO psymon_grafana;
GRANT USAGE ON SCHEMA public TO psymon_grafana;
-- Tables and views that exist already (none on the first run; all of them on a re-run)...
GRANT SELECT ON ALL TABLES IN SCHEMA public TO psymon_grafana;
-- ...and every table and view psymon creates from now on.
ALTER DEFAULT PRIVILEGES FOR ROLE psymon IN SCHEMA public GRANT SELECT ON TABLES TO psymon_grafana;
-- Functions are executable by PUBLIC unless revoked; psymon's (e.g. psymon_ensure_partitions)
-- change data, so only psymon may call them. TimescaleDB's own functions (time_bucket...)
-- belong to the extension and stay callable.
ALTER DEFAULT PRIVILEGES FOR ROLE psymon REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
