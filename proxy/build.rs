//! Embeds the dashboard (`frontend/dist`, made by scripts/build-frontend.sh) in the
//! binary, so copying one file to a pod is enough. Without it, a page saying how
//! to build it is embedded instead.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let dist = std::env::var("CAPLAB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/dist"));
    println!("cargo:rerun-if-env-changed=CAPLAB_DIST");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let built = files.iter().any(|(rel, _)| rel == "index.html");
    let mut out = String::from("static ASSETS: &[Asset] = &[\n");
    for (rel, abs) in &files {
        let _ = writeln!(out, "    Asset {{ path: {rel:?}, mime: {:?}, bytes: include_bytes!({abs:?}) }},", mime(rel));
    }
    if !built {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("placeholder.html");
        println!("cargo:rerun-if-changed={}", page.display());
        let _ = writeln!(out, "    Asset {{ path: \"index.html\", mime: \"text/html; charset=utf-8\", bytes: include_bytes!({:?}) }},", page.display().to_string());
    }
    out.push_str("];\n");
    let _ = writeln!(out, "const DASHBOARD_BUILT: bool = {built};");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    std::fs::write(dest, out).expect("write assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.push((rel, path.canonicalize().unwrap_or(path).display().to_string()));
        }
    }
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
