//! Junction's web console, embedded.
//!
//! What it owns: the built files of the Preact single-page app in `gui/` (see
//! `docs/gui.md`), compiled into the binary as a sorted table of [`Asset`]s.
//! `build.rs` produces the table: it runs `npm ci` and `npm run build` when
//! `gui/dist` is missing or older than the sources and Node.js is on `PATH`, and
//! otherwise embeds a single page that says what to install ([`built_with_node`]
//! is then false). The broker runs either way.
//!
//! What it is not: it serves nothing. The HTTP front-end (`junction-http`) decides
//! which request paths reach these assets; the app itself talks to the broker
//! only through the public HTTP API.
//!
//! Invariants worth naming:
//! - Paths are relative to the site root, without a leading `/`, and `index.html`
//!   is always present.
//! - Files under `assets/` carry a content hash in their name (Vite's output), so
//!   they may be cached forever; every other file may change between builds.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path from the site root, without a leading `/` (`index.html`,
    /// `assets/index-3f2a.js`).
    pub path: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

impl Asset {
    /// Whether the file name carries a content hash, so that it never changes
    /// under the same path and may be cached for good.
    pub fn is_immutable(&self) -> bool {
        self.path.starts_with("assets/")
    }
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The embedded file at `path` (no leading `/`), if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    generated::ASSETS
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .map(|i| &generated::ASSETS[i])
}

/// The app's entry page, served for every route of the single-page app.
pub fn index() -> &'static Asset {
    asset("index.html").unwrap_or(&generated::FALLBACK)
}

/// Every embedded file, sorted by path.
pub fn assets() -> &'static [Asset] {
    generated::ASSETS
}

/// Whether the real app was embedded (`false`: Node.js was missing or its build
/// failed, and `index.html` is a page that says so).
pub fn built_with_node() -> bool {
    generated::BUILT_WITH_NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_always_there() {
        assert_eq!(index().path, "index.html");
        assert!(index().content_type.starts_with("text/html"));
        assert!(!index().body.is_empty());
    }

    #[test]
    fn table_is_sorted_for_lookup() {
        assert!(assets().windows(2).all(|w| w[0].path < w[1].path));
        for a in assets() {
            assert!(asset(a.path).is_some(), "{}", a.path);
        }
        assert!(asset("no/such/file.js").is_none());
    }
}
