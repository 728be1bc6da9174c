//! Random bearer tokens held in memory as BLAKE3 hashes only, each with an expiry: the
//! table behind login sessions and recipient access grants, and the cookie reader they
//! share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Tokens and the values they stand for, for `lifetime` after issue.
#[derive(Debug)]
pub struct TokenTable<V> {
    live: Mutex<HashMap<[u8; 32], (V, Instant)>>,
    lifetime: Duration,
    /// Maximum number of live tokens; the one closest to expiry is dropped beyond it.
    max: usize,
}

impl<V: Copy> TokenTable<V> {
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            lifetime,
            max,
        }
    }

    /// Issues a token for `value`: 256 random bits in URL-safe base64.
    pub fn issue(&self, value: V) -> String {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut live = self.live.lock().expect("the token lock is never poisoned");

        live.retain(|_, (_, expires)| *expires > now);
        if live.len() >= self.max {
            let oldest = live
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(hash(&token), (value, now + self.lifetime));
        token
    }

    /// Returns the value of a live token.
    pub fn get(&self, token: &str) -> Option<V> {
        let live = self.live.lock().expect("the token lock is never poisoned");
        let (value, expires) = live.get(&hash(token))?;
        (*expires > Instant::now()).then_some(*value)
    }

    /// Ends a token; an unknown one is ignored.
    pub fn remove(&self, token: &str) {
        self.live
            .lock()
            .expect("the token lock is never poisoned")
            .remove(&hash(token));
    }
}

fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// Returns the values of every cookie named `name` in the request's `Cookie` headers.
pub fn cookie_values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(cookie, _)| *cookie == name)
        .map(|(_, value)| value)
}
