# npm_setup.sh: sourced by the validators that need npm packages. Installs tests/lb's
# package-lock.json with `npm ci` into BUILD_DIR/npm (cache in BUILD_DIR/npm-cache), once per
# lock file content, under a lock so parallel tests share it, and copies check_deploy.mjs
# there. Sets $npm_dir. Exits 77 (skip) when node or npm is not installed.
# Needs: $lb_src (this folder), $build_dir.
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "SKIP: node/npm not installed (Debian package npm)"; exit 77; }
npm_dir=$build_dir/npm
mkdir -p "$npm_dir"
(
  flock 9
  stamp=$(cat "$lb_src/package.json" "$lb_src/package-lock.json" | sha256sum | cut -c1-16)
  if [ "$(cat "$npm_dir/.stamp" 2>/dev/null)" != "$stamp" ] ||
    [ ! -d "$npm_dir/node_modules" ]; then
    cp "$lb_src/package.json" "$lb_src/package-lock.json" "$npm_dir/"
    (cd "$npm_dir" && npm ci --cache "$build_dir/npm-cache" --prefer-offline --no-audit \
      --no-fund --loglevel=error) || { echo "FAIL: npm ci in $npm_dir failed" >&2; exit 1; }
    echo "$stamp" >"$npm_dir/.stamp"
  fi
  cp "$lb_src/check_deploy.mjs" "$npm_dir/"
) 9>"$build_dir/npm.lock"
