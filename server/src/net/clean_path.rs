//! Unclean paths on the client port's HTTP side, as etcd's Go `ServeMux` answers them: a path
//! that is not its own clean form (`//`, `.` or `..` elements, once percent-decoded) is
//! redirected, 301 Moved Permanently, to the clean form with the query kept; GET and HEAD get
//! Go's HTML note, other methods an empty body. gRPC calls never pass here.
#![forbid(unsafe_code)]

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Go's `cleanPath`: rooted, `path.Clean`ed, its trailing slash kept (but for the root).
fn clean(p: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for e in p.split(|&b| b == b'/') {
        match e {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            e => parts.push(e),
        }
    }
    let mut out = Vec::with_capacity(p.len() + 1);
    for e in &parts {
        out.push(b'/');
        out.extend_from_slice(e);
    }
    if out.is_empty() || p.last() == Some(&b'/') {
        out.push(b'/');
    }
    out
}

/// What Go escapes in a URL's path (`url.URL.EscapedPath` with no raw path): all but
/// letters, digits, `-_.~` and `$&+,/:;=@`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

/// Go's `htmlEscape` (what `http.Redirect` writes in its note).
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

/// Where an unclean path is sent (none for a clean one, or one that does not decode).
fn location(uri: &Uri) -> Option<String> {
    let raw = uri.path();
    // Nothing to clean without a dot element or a doubled slash (escapes aside); `*` (a
    // server-wide OPTIONS) is not a path.
    if !raw.starts_with('/') || !(raw.contains("//") || raw.contains("/.") || raw.contains('%')) {
        return None;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let clean = clean(&decoded);
    if clean == decoded {
        return None;
    }
    let mut loc = percent_encode(&clean, PATH).to_string();
    if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
        loc.push('?');
        loc.push_str(q);
    }
    Some(loc)
}

/// The 301 for an unclean path, or none.
pub fn redirect(method: &Method, uri: &Uri) -> Option<Response> {
    let loc = location(uri)?;
    let loc_value = HeaderValue::from_str(&loc).ok()?;
    let note = *method == Method::GET || *method == Method::HEAD;
    let body = if *method == Method::GET {
        format!("<a href=\"{}\">Moved Permanently</a>.\n\n", html_escape(&loc))
    } else {
        String::new()
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = r.headers_mut();
    if note {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    h.insert(header::LOCATION, loc_value);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loc(p: &str) -> Option<String> {
        location(&p.parse::<Uri>().unwrap())
    }

    #[test]
    fn paths_as_gos_servemux_cleans_them() {
        // What etcd 3.4 answered for each (curl --path-as-is).
        assert_eq!(loc("/v2/keys//a?x=1").as_deref(), Some("/v2/keys/a?x=1"));
        assert_eq!(loc("/v2/keys/a/../b").as_deref(), Some("/v2/keys/b"));
        assert_eq!(loc("/v2/keys/.").as_deref(), Some("/v2/keys"));
        assert_eq!(loc("/v2/keys/./a").as_deref(), Some("/v2/keys/a"));
        assert_eq!(loc("//health").as_deref(), Some("/health"));
        assert_eq!(loc("/metrics/../health").as_deref(), Some("/health"));
        assert_eq!(loc("/v3//kv/range").as_deref(), Some("/v3/kv/range"));
        // Clean ones, a trailing slash included.
        for p in ["/v2/keys/a/", "/health", "/", "/v2/keys/a%20b", "/v2/keys/.a/..b"] {
            assert_eq!(loc(p), None, "{p}");
        }
        // Decoded first, as Go's URL.Path.
        assert_eq!(loc("/v2/keys/a%2F%2Fb").as_deref(), Some("/v2/keys/a/b"));
        assert_eq!(loc("/v2/keys/%2E%2E/x%20y//").as_deref(), Some("/v2/x%20y/"));
        assert_eq!(loc("/../..").as_deref(), Some("/"));
    }

    #[test]
    fn answers_as_go_writes_them() {
        let get = redirect(&Method::GET, &"/v2/keys//a?x=1".parse().unwrap()).unwrap();
        assert_eq!(get.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(get.headers()[header::LOCATION], "/v2/keys/a?x=1");
        assert_eq!(get.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let put = redirect(&Method::PUT, &"/v2/keys//a".parse().unwrap()).unwrap();
        assert!(put.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(html_escape("<a href=\"x\">&'"), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;");
    }

    proptest! {
        /// Cleaning is idempotent, rooted, and leaves no empty, `.` or `..` element.
        #[test]
        fn clean_is_a_fixed_point(p in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(b'%')], 0..24)) {
            let c = clean(&p);
            prop_assert_eq!(clean(&c), c.clone());
            prop_assert_eq!(c.first(), Some(&b'/'));
            let inner = c.strip_suffix(b"/").unwrap_or(&c);
            for e in inner.split(|&b| b == b'/').skip(1) {
                prop_assert!(!e.is_empty() && e != b"." && e != b"..", "{:?}", c);
            }
        }
    }
}
