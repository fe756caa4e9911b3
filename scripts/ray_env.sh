# Sourced by scripts/train_ray.sh and scripts/train_rl.sh: the Ray cluster their driver joins, or a local one.
#
# ray_driver_env: sets RAY_AUTH_MODE and RAY_ADDRESS for the driver's ray.init().
#   - Ray 2.60's head checks a token (scripts/ray_cluster.sh); a driver that names the cluster's address must send
#     it, so RAY_AUTH_MODE=token is exported when a token is here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
#     ~/.ray/auth_token) and RAY_AUTH_MODE is unset. Without it `ray status` and ray.init() are refused, and the
#     launcher used to fall back to a local one-node Ray, silently.
#   - RAY_ADDRESS set to an address (host:port): that cluster must answer, else the launcher stops naming it.
#   - RAY_ADDRESS empty or `local`: a fresh local Ray.
#   - RAY_ADDRESS unset or `auto`: the cluster this machine runs (`ray status`), else RAY_ADDRESS=local, a fresh
#     local Ray; `local` also keeps ray.init() from following a /tmp/ray/ray_current_cluster that a dead head
#     left behind (it would fail to connect to it).
# answers HOST:PORT: whether something accepts a TCP connection there (within 3 s)
answers() {
  timeout 3 bash -c ": <\"/dev/tcp/${1%:*}/${1##*:}\"" 2>/dev/null
}

ray_driver_env() {
  local token_file=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
  if [ -z "${RAY_AUTH_MODE:-}" ] && { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -s "$token_file" ]; }; then
    export RAY_AUTH_MODE=token
  fi
  case "${RAY_ADDRESS-auto}" in
    "" | local) export RAY_ADDRESS=local ;;
    auto)
      local recorded= file=${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray/ray_current_cluster  # where Ray keeps it
      if [ -s "$file" ]; then recorded=$(head -n1 "$file"); fi
      if [ -n "$recorded" ] && ! answers "$recorded"; then
        # `ray status` would spend ~45 s retrying that address before failing
        echo "ray_env.sh: $file names a Ray head at $recorded that does not answer (a" \
          "cluster that ended without \`ray stop\`); starting a local Ray instead (RAY_ADDRESS=host:port joins" \
          "a cluster; deleting that file silences this)" >&2
        export RAY_ADDRESS=local
      elif RAY_ADDRESS=auto timeout 60 ray status >/dev/null 2>&1; then
        export RAY_ADDRESS=auto
      else
        export RAY_ADDRESS=local
      fi
      ;;
    *)
      if ! timeout 60 ray status --address="$RAY_ADDRESS" >/dev/null 2>&1; then
        echo "ray_env.sh: no Ray cluster answers at RAY_ADDRESS=$RAY_ADDRESS (ray status failed; RAY_AUTH_MODE=" \
          "${RAY_AUTH_MODE:-unset}); start it with scripts/ray_cluster.sh, or unset RAY_ADDRESS for a local Ray" >&2
        exit 2
      fi
      ;;
  esac
}
