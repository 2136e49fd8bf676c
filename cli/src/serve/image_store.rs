//! The PNGs of `response_format=url` answers: kept in memory for a bounded time (`--url-ttl-seconds`)
//! and a bounded total size (`--url-store-mib`, oldest pushed out first), each under an unguessable
//! name, and served at `GET /v1/images/files/{name}`. The name is the capability, as with the
//! signed links OpenAI answers with: fetching it needs no API key.

use axum::body::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct ImageStore {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, Stored>,
    /// Names in the order they were stored: expiry and eviction both take from the front.
    order: VecDeque<String>,
    bytes: usize,
}

struct Stored {
    png: Bytes,
    expires: Instant,
}

impl ImageStore {
    pub fn new(ttl: Duration, max_bytes: usize) -> ImageStore {
        ImageStore { ttl, max_bytes, inner: Mutex::new(Inner::default()) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stores `png` and returns its file name (`<32 hex digits>.png`).
    pub fn put(&self, png: Vec<u8>) -> Result<String, String> {
        self.put_at(png, Instant::now())
    }

    /// The PNG stored under `name` and how long it is kept still; `None` once expired or pushed out.
    pub fn get(&self, name: &str) -> Option<(Bytes, Duration)> {
        self.get_at(name, Instant::now())
    }

    fn put_at(&self, png: Vec<u8>, now: Instant) -> Result<String, String> {
        if png.len() > self.max_bytes {
            return Err(format!(
                "the image ({} bytes) is larger than the whole URL store ({} bytes, --url-store-mib)",
                png.len(),
                self.max_bytes
            ));
        }
        let name = format!("{}.png", random_hex()?);
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.drop_expired(now);
        while s.bytes + png.len() > self.max_bytes {
            s.drop_oldest();
        }
        s.bytes += png.len();
        s.order.push_back(name.clone());
        s.by_name.insert(name.clone(), Stored { png: Bytes::from(png), expires: now + self.ttl });
        Ok(name)
    }

    fn get_at(&self, name: &str, now: Instant) -> Option<(Bytes, Duration)> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.drop_expired(now);
        s.by_name.get(name).map(|x| (x.png.clone(), x.expires.saturating_duration_since(now)))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().by_name.len()
    }
}

impl Inner {
    fn drop_expired(&mut self, now: Instant) {
        // Every image lives equally long, so the store order is the expiry order.
        while let Some(first) = self.order.front() {
            if self.by_name.get(first).is_some_and(|x| x.expires > now) {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(name) = self.order.pop_front() {
            if let Some(x) = self.by_name.remove(&name) {
                self.bytes -= x.png.len();
            }
        }
    }
}

/// 128 bits from the operating system's generator, as hex: a name nobody can guess.
fn random_hex() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("the system random generator failed: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_expire_after_the_ttl() {
        let store = ImageStore::new(Duration::from_secs(10), 1 << 20);
        let t0 = Instant::now();
        let a = store.put_at(vec![1, 2, 3], t0).unwrap();
        assert!(a.ends_with(".png") && a.len() == 36, "{a}");
        let (png, left) = store.get_at(&a, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!((&png[..], left), (&[1u8, 2, 3][..], Duration::from_secs(6)));
        assert!(store.get_at(&a, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(store.len(), 0);
        assert!(store.get_at("../etc/passwd", t0).is_none());
    }

    #[test]
    fn the_oldest_images_make_room() {
        let store = ImageStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let a = store.put_at(vec![0; 4], t0).unwrap();
        let b = store.put_at(vec![0; 4], t0).unwrap();
        let c = store.put_at(vec![0; 4], t0).unwrap();
        assert_ne!(a, b);
        assert!(store.get_at(&a, t0).is_none());
        assert!(store.get_at(&b, t0).is_some() && store.get_at(&c, t0).is_some());
        assert!(store.put_at(vec![0; 11], t0).unwrap_err().contains("--url-store-mib"));
        assert_eq!(store.len(), 2);
    }
}
