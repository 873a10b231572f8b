# Sourced by the scripts: make rustup's cargo visible to non-login shells.
for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
  if [ -x "$d/cargo" ]; then
    case ":$PATH:" in *":$d:"*) ;; *) export PATH="$d:$PATH" ;; esac
  fi
done
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
