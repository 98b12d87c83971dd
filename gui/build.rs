//! Builds the web console and writes `$OUT_DIR/assets.rs`, the table of embedded
//! files that `rust/lib.rs` includes.
//!
//! - When `dist/index.html` is missing or older than any source of the app
//!   (`src/`, `public/`, `index.html`, `package.json`, `package-lock.json`,
//!   `vite.config.ts`, `tsconfig.json`) and Node.js 20+ with npm is on `PATH`, it
//!   runs `npm ci` (only when `node_modules` is missing or older than the lock
//!   file) and `npm run build`, which writes `dist/`.
//! - It then embeds every file under `dist/`.
//! - Without Node.js, or when the npm build fails, it embeds one plain page that
//!   says what to install, and prints a cargo warning: the broker still builds and
//!   runs. With `REQUIRE_JUNCTION_GUI=1` (set by `scripts/test`) a console that
//!   cannot be built fails the build instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Inputs of the npm build, relative to this directory.
const SOURCES: &[&str] = &[
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

const FALLBACK_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Junction console not built</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1f24;background:#fff}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}a{color:#6cb6ff}}
code{font-size:90%}
</style>
</head>
<body>
<main>
<h1>The Junction web console was not built</h1>
<p>This binary was compiled without Node.js, so the console's assets could not be built.
The broker itself is running: its NATS listener, the HTTP API under <a href="/v1/server"><code>/v1</code></a>,
<a href="/varz"><code>/varz</code></a> and <a href="/metrics"><code>/metrics</code></a> all work.</p>
<p>To get the console: <strong>install Node.js 20+ and npm, then rebuild</strong>, for example</p>
<pre><code>touch gui/package.json
cargo run --release -- serve</code></pre>
<p>(touching <code>gui/package.json</code> makes cargo run the console's build again). See <code>docs/gui.md</code>.</p>
</main>
</body>
</html>
"#;

fn main() {
    if let Err(e) = run() {
        panic!("junction-gui build script: {e}");
    }
}

fn run() -> Result<(), String> {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    for source in SOURCES {
        // A path that does not exist would make cargo rerun this script every time.
        if here.join(source).exists() {
            println!("cargo:rerun-if-changed={source}");
        }
    }
    println!("cargo:rerun-if-env-changed=REQUIRE_JUNCTION_GUI");
    let required = std::env::var("REQUIRE_JUNCTION_GUI").is_ok_and(|v| v == "1");

    let dist = here.join("dist");
    let built = match ensure_built(&here, &dist) {
        Ok(()) => true,
        Err(why) if required => {
            return Err(format!(
                "the web console could not be built ({why}) and REQUIRE_JUNCTION_GUI=1"
            ));
        }
        Err(why) => {
            println!(
                "cargo:warning=web console not built ({why}); embedding a page that says to install Node.js 20+ and npm"
            );
            false
        }
    };

    let fallback = out.join("fallback.html");
    write_if_changed(&fallback, FALLBACK_PAGE.as_bytes())?;
    let mut files = Vec::new();
    if built {
        collect(&dist, &dist, &mut files)?;
    } else {
        files.push(("index.html".to_string(), fallback.clone()));
    }
    files.sort();

    let mut code = String::new();
    let _ = writeln!(code, "/// Whether `npm run build` produced the assets.");
    let _ = writeln!(code, "pub const BUILT_WITH_NODE: bool = {built};");
    let _ = writeln!(code, "/// Every embedded file, sorted by path.");
    let _ = writeln!(code, "pub static ASSETS: &[crate::Asset] = &[");
    for (path, file) in &files {
        let _ = writeln!(
            code,
            "    crate::Asset {{ path: {path:?}, body: include_bytes!({file:?}), content_type: {:?} }},",
            content_type(path)
        );
    }
    let _ = writeln!(code, "];");
    let _ = writeln!(code, "/// The page served when no app was built.");
    let _ = writeln!(
        code,
        "pub static FALLBACK: crate::Asset = crate::Asset {{ path: \"index.html\", body: include_bytes!({fallback:?}), content_type: \"text/html; charset=utf-8\" }};"
    );
    write_if_changed(&out.join("assets.rs"), code.as_bytes())
}

/// Makes sure `dist/` holds a build at least as new as every source.
fn ensure_built(here: &Path, dist: &Path) -> Result<(), String> {
    let sources_changed = SOURCES
        .iter()
        .filter_map(|s| newest_mtime(&here.join(s)))
        .max();
    let built_at = mtime(&dist.join("index.html"));
    if matches!((built_at, sources_changed), (Some(b), Some(c)) if b >= c) {
        return Ok(());
    }
    if !here.join("package.json").exists() {
        return Err("gui/package.json is missing".into());
    }
    check_node()?;
    let lock = mtime(&here.join("package-lock.json"));
    let installed = mtime(&here.join("node_modules/.package-lock.json"));
    let need_install = match (installed, lock) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    };
    if need_install {
        npm(here, &["ci", "--no-audit", "--no-fund"])?;
    }
    npm(here, &["run", "build"])?;
    if !dist.join("index.html").exists() {
        return Err("`npm run build` wrote no dist/index.html".into());
    }
    Ok(())
}

fn check_node() -> Result<(), String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| "`node` is not on PATH".to_string())?;
    let text = String::from_utf8_lossy(&version.stdout);
    let major = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("Node.js {} is too old; 20+ is needed", text.trim()));
    }
    Command::new("npm")
        .arg("--version")
        .output()
        .map_err(|_| "`npm` is not on PATH".to_string())?;
    Ok(())
}

fn npm(here: &Path, args: &[&str]) -> Result<(), String> {
    // Output is captured: a build script's stdout is read by cargo as directives.
    let output = Command::new("npm")
        .args(args)
        .current_dir(here)
        .output()
        .map_err(|e| format!("could not run npm: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut tail = String::from_utf8_lossy(&output.stdout).into_owned();
    tail.push_str(&String::from_utf8_lossy(&output.stderr));
    for line in tail
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("cargo:warning=npm: {line}");
    }
    Err(format!(
        "`npm {}` failed ({})",
        args.join(" "),
        output.status
    ))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of anything under a directory.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    let mut newest = meta.modified().ok();
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        newest = newest.max(newest_mtime(&entry.path()));
    }
    newest
}

/// Every file under `dir` as (path relative to `root` with `/`, absolute path),
/// skipping dot files.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let relative: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((relative.join("/"), path));
        }
    }
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
