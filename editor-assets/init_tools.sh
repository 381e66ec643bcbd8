#!/bin/sh
# init_tools.sh: the main container's start (INJECTION.md). Writes
# $GL_TOOLS_DIR/workspaced.toml with the editor as the first component and
# starts workspaced. Runs until the daemon exits; with --background it returns
# once the daemon answers /healthz (for a postStart hook).
#
# Options: --background, --print-config (print the config and exit).
# Environment (defaults as in a workspace pod): PROJECTS_ROOT, GL_TOOLS_DIR,
# GL_VSCODE_PORT, WORKSPACED_PORT, GL_WORKSPACE_LOGS_DIR, GL_EDITOR_PROFILE
# (a name in editor-profiles/) or GL_EDITOR_PROFILE_FILE (any profile file),
# GL_PROJECT_NAME, GL_WORKSPACED_CONTAINERS ("name=url,name=url"),
# GL_VSCODE_EXTENSION_MARKETPLACE_{SERVICE_URL,ITEM_URL,RESOURCE_URL_TEMPLATE},
# GL_FILE_VARIABLES_DIR (the mounted file variables), GL_INIT_TOOLS_TIMEOUT,
# GL_WORKSPACE_IDLE_WEBHOOK (on_idle posts there; `render --idle-webhook`).
set -eu

mode=foreground
for arg in "$@"; do
  case "$arg" in
    --background) mode=background ;;
    --print-config) mode=print ;;
    *) echo "init_tools.sh: unknown option $arg; allowed: --background, --print-config" >&2; exit 64 ;;
  esac
done

: "${PROJECTS_ROOT:=/projects}"
: "${GL_TOOLS_DIR:=$PROJECTS_ROOT/.gl-tools}"
: "${GL_VSCODE_PORT:=60001}"
: "${WORKSPACED_PORT:=60080}"
: "${GL_WORKSPACE_LOGS_DIR:=$PROJECTS_ROOT/workspace-logs}"
: "${GL_EDITOR_PROFILE:=code-server}"
: "${GL_EDITOR_PROFILE_FILE:=$GL_TOOLS_DIR/editor-profiles/$GL_EDITOR_PROFILE.toml}"
: "${GL_FILE_VARIABLES_DIR:=/.workspace-data/variables/file}"
: "${GL_EDITOR_DATA_DIR:=$PROJECTS_ROOT/.gl-editor}"
: "${GL_INIT_TOOLS_TIMEOUT:=60}"
: "${GL_WORKSPACED_CONTAINERS:=}"
: "${GL_WORKSPACE_IDLE_WEBHOOK:=}"

mkdir -p "$GL_WORKSPACE_LOGS_DIR"
startup_log="$GL_WORKSPACE_LOGS_DIR/start-up.log"
log() {
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) init_tools: $*"
  echo "$line" >&2
  echo "$line" >>"$startup_log"
}

# The project: GL_PROJECT_NAME, else the only visible directory, else the root.
project_dir=$PROJECTS_ROOT
if [ -n "${GL_PROJECT_NAME:-}" ] && [ -d "$PROJECTS_ROOT/$GL_PROJECT_NAME" ]; then
  project_dir="$PROJECTS_ROOT/$GL_PROJECT_NAME"
else
  found=""
  for d in "$PROJECTS_ROOT"/*/; do
    [ -d "$d" ] || continue
    case "$(basename "$d")" in workspace-logs) continue ;; esac
    if [ -z "$found" ]; then found=${d%/}; else found=multiple; fi
  done
  case "$found" in ""|multiple) ;; *) project_dir=$found ;; esac
fi
GL_PROJECT_DIR=$project_dir

# Extension gallery: GitLab's variables when set, else Open VSX.
json_str() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}
open_vsx_resources='https://open-vsx.org/vscode/unpkg/{publisher}/{name}/{version}/{path}'
service_url=${GL_VSCODE_EXTENSION_MARKETPLACE_SERVICE_URL:-https://open-vsx.org/vscode/gallery}
item_url=${GL_VSCODE_EXTENSION_MARKETPLACE_ITEM_URL:-https://open-vsx.org/vscode/item}
resource_url=${GL_VSCODE_EXTENSION_MARKETPLACE_RESOURCE_URL_TEMPLATE:-$open_vsx_resources}
GL_EXTENSIONS_GALLERY="{\"serviceUrl\":$(json_str "$service_url"),\"itemUrl\":$(json_str "$item_url"),\"resourceUrlTemplate\":$(json_str "$resource_url")}"
export GL_TOOLS_DIR GL_VSCODE_PORT GL_PROJECT_DIR GL_EDITOR_DATA_DIR GL_EXTENSIONS_GALLERY

if [ ! -f "$GL_EDITOR_PROFILE_FILE" ]; then
  log "editor profile $GL_EDITOR_PROFILE_FILE not found; set GL_EDITOR_PROFILE to one of: $(ls "$GL_TOOLS_DIR/editor-profiles" 2>/dev/null | sed 's/\.toml$//' | tr '\n' ' ')"
  exit 1
fi

# TOML basic-string escaping of a value.
toml_str() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# The profile with ${NAME} replaced by the TOML-escaped environment value and
# its [env] table renamed to [components.env].
render_profile() {
  awk '
    function esc(s,    out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\") out = out "\\\\"
        else if (c == "\"") out = out "\\\""
        else out = out c
      }
      return out
    }
    /^[[:space:]]*#/ { next }
    /^\[env\][[:space:]]*$/ { print "[components.env]"; next }
    {
      out = ""
      line = $0
      while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*\}/)) {
        name = substr(line, RSTART + 2, RLENGTH - 3)
        out = out substr(line, 1, RSTART - 1) esc(ENVIRON[name])
        line = substr(line, RSTART + RLENGTH)
      }
      print out line
    }
  ' "$GL_EDITOR_PROFILE_FILE"
}

token_file="$GL_FILE_VARIABLES_DIR/workspaced_token"
config() {
  echo "# Written by init_tools.sh; rewritten at every start."
  echo "listen = $(toml_str "0.0.0.0:$WORKSPACED_PORT")"
  echo "workspace = $(toml_str "$project_dir")"
  echo "logs_dir = $(toml_str "$GL_WORKSPACE_LOGS_DIR")"
  if [ -f "$token_file" ]; then
    echo "token_file = $(toml_str "$token_file")"
  fi
  if [ -n "$GL_WORKSPACE_IDLE_WEBHOOK" ]; then
    echo "on_idle = { webhook = $(toml_str "$GL_WORKSPACE_IDLE_WEBHOOK") }"
  fi
  echo
  echo "[[components]]"
  echo "name = \"editor\""
  echo "cwd = $(toml_str "$project_dir")"
  render_profile
  if [ -n "$GL_WORKSPACED_CONTAINERS" ]; then
    echo
    echo "[containers]"
    old_ifs=$IFS
    IFS=,
    for pair in $GL_WORKSPACED_CONTAINERS; do
      echo "$(toml_str "${pair%%=*}") = $(toml_str "${pair#*=}")"
    done
    IFS=$old_ifs
  fi
}

if [ "$mode" = print ]; then
  config
  exit 0
fi

health_url="http://127.0.0.1:$WORKSPACED_PORT/healthz"
healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$health_url" 2>/dev/null
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O /dev/null -T 2 "$health_url" 2>/dev/null
  else
    log "neither curl nor wget is installed; cannot wait for $health_url"
    exit 1
  fi
}

if [ "$mode" = background ] && healthy; then
  log "workspaced already answers $health_url; nothing to do"
  exit 0
fi

cfg="$GL_TOOLS_DIR/workspaced.toml"
# The tools dir is a symlink swapped by `install`; write beside it atomically.
config >"$cfg.tmp.$$"
mv -f "$cfg.tmp.$$" "$cfg"
chmod 0640 "$cfg"

# The editor's default settings, unless the user has their own.
settings="$GL_EDITOR_DATA_DIR/data/User/settings.json"
if [ ! -f "$settings" ] && [ -f "$GL_TOOLS_DIR/editor-settings.json" ]; then
  mkdir -p "$(dirname "$settings")"
  cp "$GL_TOOLS_DIR/editor-settings.json" "$settings"
fi

daemon_log="$GL_WORKSPACE_LOGS_DIR/workspaced.log"
log "starting workspaced on 0.0.0.0:$WORKSPACED_PORT for $project_dir with editor profile $GL_EDITOR_PROFILE_FILE; log in $daemon_log"
set -- "$GL_TOOLS_DIR/workspaced" serve --listen "0.0.0.0:$WORKSPACED_PORT" --workspace "$project_dir" --config "$cfg"

if [ "$mode" = foreground ]; then
  exec "$@" >>"$daemon_log" 2>&1
fi

nohup "$@" >>"$daemon_log" 2>&1 &
pid=$!
echo "$pid" >"$GL_WORKSPACE_LOGS_DIR/workspaced.pid"
waited=0
# Poll in tenths of a second: sleep with a fraction works in GNU, busybox and dash's sleep(1).
while ! healthy; do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "workspaced exited before it answered $health_url; last lines of $daemon_log:"
    tail -n 20 "$daemon_log" >&2 || true
    exit 1
  fi
  if [ "$waited" -ge "$((GL_INIT_TOOLS_TIMEOUT * 10))" ]; then
    log "workspaced did not answer $health_url within ${GL_INIT_TOOLS_TIMEOUT}s"
    exit 1
  fi
  sleep 0.1
  waited=$((waited + 1))
done
log "workspaced (pid $pid) answers $health_url"
