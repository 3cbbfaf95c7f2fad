//! HTTP-01: a built-in responder (answers the CA's concurrent validation requests from memory)
//! or files written under an existing web server's document root.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::task::JoinHandle;

const WELL_KNOWN: &str = ".well-known/acme-challenge";

type Tokens = Arc<RwLock<HashMap<String, String>>>;

/// Serves `/.well-known/acme-challenge/{token}` until dropped.
pub struct Http01Responder {
    tokens: Tokens,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Http01Responder {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let tokens = Tokens::default();
        let app = Router::new()
            .route("/.well-known/acme-challenge/{token}", get(answer))
            .with_state(tokens.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP-01 responder stopped");
            }
        });
        Ok(Self {
            tokens,
            local_addr,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn present(&self, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    pub(crate) fn cleanup(&self, token: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.remove(token);
        }
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(tokens): State<Tokens>,
    UrlPath(token): UrlPath<String>,
) -> Result<String, StatusCode> {
    let map = tokens
        .read()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    map.get(&token).cloned().ok_or(StatusCode::NOT_FOUND)
}

/// The file a web server must serve for `token` under `webroot`. Tokens are base64url by
/// RFC 8555 §8.3; anything else is refused so a hostile CA cannot write outside the directory.
pub(crate) fn webroot_file(webroot: &Path, token: &str) -> Option<PathBuf> {
    let safe = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    safe.then(|| webroot.join(WELL_KNOWN).join(token))
}

pub(crate) fn write_webroot(file: &Path, key_authorization: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    // Readable by the web server's user: the content is public by design.
    fs::write(file, key_authorization)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webroot_refuses_tokens_that_are_not_base64url() {
        let root = Path::new("/srv/www");
        assert_eq!(
            webroot_file(root, "abc-DEF_09"),
            Some(PathBuf::from(
                "/srv/www/.well-known/acme-challenge/abc-DEF_09"
            ))
        );
        for bad in ["", "../../etc/passwd", "a/b", "a.b", "tok en"] {
            assert_eq!(webroot_file(root, bad), None, "{bad:?}");
        }
    }
}
