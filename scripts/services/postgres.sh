# PostgreSQL for the steer-sink-postgres tests (sourced by scripts/test.sh
# and scripts/bench-postgres.sh; uses their `free_port`, `wait_for`, `log`
# and $SERVICES_DIR).
#
# Exports:
#   STEER_TEST_POSTGRES_URL           superuser, trust auth, database steer_test (sslmode=disable)
#   STEER_TEST_POSTGRES_PASSWORD_URL  role steer_pw, scram-sha-256 password auth
#   STEER_TEST_POSTGRES_PASSWORD      that role's password
#   STEER_TEST_POSTGRES_NOPRIV_URL    role steer_nopriv: may log in, nothing else
#   STEER_TEST_POSTGRES_TLS_CA        PEM of the CA that signed the server certificate
#                                     (the server accepts TLS; sslmode=require works)
#   STEER_TEST_PG_CTL, STEER_TEST_PG_DATA, STEER_TEST_PG_RUNAS
#                                     to stop/start the server mid-test:
#                                     [runuser -u $RUNAS --] $PG_CTL -D $PG_DATA -w stop|start
postgres_packages="postgresql"

_pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

# Run a command as the cluster owner (initdb and pg_ctl refuse root).
_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# create_pg_cluster DIR PORT: initdb + config, not started.
create_pg_cluster() {
  local dir=$1 port=$2 bin
  bin=$(_pg_bindir) || { log "PostgreSQL binaries not found"; return 1; }
  mkdir -p "$dir"
  chmod 0755 "$(dirname "$dir")"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  chmod 0700 "$dir"
  _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

start_postgres() {
  local dir="$SERVICES_DIR/pg" port bin owner=""
  bin=$(_pg_bindir) || { log "PostgreSQL binaries not found"; return 1; }
  port=$(free_port)
  create_pg_cluster "$dir" "$port" || return 1

  # TLS: a throwaway CA and a server certificate for 127.0.0.1 / localhost.
  if command -v openssl >/dev/null 2>&1; then
    (
      cd "$dir" || exit 1
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=steer test CA" \
        -keyout ca.key -out ca.crt >/dev/null 2>&1
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout server.key -out server.csr >/dev/null 2>&1
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.crt >/dev/null 2>&1
    ) && {
      cp "$dir/server.crt" "$dir/server.key" "$dir/data/"
      chmod 0600 "$dir/data/server.key"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/data/server.crt" "$dir/data/server.key"
      printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$dir/data/postgresql.conf"
      chmod 0644 "$dir/ca.crt"
      export STEER_TEST_POSTGRES_TLS_CA="$dir/ca.crt"
    }
  fi

  # Password auth for steer_pw (before the trust lines initdb wrote).
  { echo "host all steer_pw 127.0.0.1/32 scram-sha-256"; cat "$dir/data/pg_hba.conf"; } >"$dir/pg_hba.new"
  cat "$dir/pg_hba.new" >"$dir/data/pg_hba.conf"

  _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  wait_for postgres 30 "$bin/pg_isready" -h 127.0.0.1 -p "$port" || return 1

  local pw
  pw="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres <<SQL >/dev/null || return 1
CREATE DATABASE steer_test;
SET password_encryption = 'scram-sha-256';
CREATE ROLE steer_pw LOGIN PASSWORD '$pw';
GRANT ALL ON DATABASE steer_test TO steer_pw;
CREATE ROLE steer_nopriv LOGIN;
REVOKE ALL ON DATABASE steer_test FROM PUBLIC;
GRANT CONNECT ON DATABASE steer_test TO steer_nopriv;
SQL

  [ "$(id -u)" = 0 ] && owner=postgres
  # sslmode=disable: the server offers TLS with a certificate only our test CA
  # trusts; the TLS test switches to sslmode=require with that CA.
  export STEER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/steer_test?sslmode=disable"
  export STEER_TEST_POSTGRES_PASSWORD="$pw"
  export STEER_TEST_POSTGRES_PASSWORD_URL="postgres://steer_pw:$pw@127.0.0.1:$port/steer_test?sslmode=disable"
  export STEER_TEST_POSTGRES_NOPRIV_URL="postgres://steer_nopriv@127.0.0.1:$port/steer_test?sslmode=disable"
  export STEER_TEST_PG_CTL="$bin/pg_ctl"
  export STEER_TEST_PG_DATA="$dir/data"
  export STEER_TEST_PG_RUNAS="$owner"
  export STEER_TEST_PG_BIN="$bin"
  POSTGRES_DIR=$dir
}

stop_postgres() {
  local dir="${POSTGRES_DIR:-$SERVICES_DIR/pg}" bin
  bin=$(_pg_bindir) || return 0
  [ -f "$dir/data/postmaster.pid" ] || return 0
  _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop >/dev/null 2>&1 && return 0
  # Fall back to the postmaster's PID.
  local pid
  pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) && [ -n "$pid" ] && stop_pid "$pid"
}
