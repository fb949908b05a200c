//! Just enough of the Redis protocol (RESP2) to measure what the gateway keeps there:
//! `INFO memory`, `DBSIZE`, `SCAN`, `MEMORY USAGE`, `PING`. Measurement only.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

pub struct Redis {
    stream: BufReader<TcpStream>,
}

impl Redis {
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("Redis for the benchmark must be on loopback, not {addr}");
        }
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to Redis at {addr}"))?;
        Ok(Redis { stream: BufReader::new(stream) })
    }

    pub async fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&out).await?;
        Box::pin(read_reply(&mut self.stream)).await
    }

    pub async fn used_memory(&mut self) -> Result<i64> {
        let info = match self.cmd(&["INFO", "memory"]).await? {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => bail!("unexpected INFO reply {other:?}"),
        };
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no used_memory in INFO"))
    }

    pub async fn dbsize(&mut self) -> Result<i64> {
        match self.cmd(&["DBSIZE"]).await? {
            Reply::Int(n) => Ok(n),
            other => bail!("unexpected DBSIZE reply {other:?}"),
        }
    }

    /// Samples up to `per_group` keys of each namespace (the key up to its last `:`) and
    /// returns namespace → (keys seen, mean `MEMORY USAGE` bytes of the sampled ones).
    pub async fn usage_by_namespace(&mut self, max_keys: usize, per_group: usize) -> Result<Groups> {
        let mut groups: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut cursor = "0".to_string();
        let mut seen = 0usize;
        loop {
            let reply = self.cmd(&["SCAN", &cursor, "COUNT", "1000"]).await?;
            let Reply::Array(parts) = reply else { bail!("unexpected SCAN reply") };
            let [Reply::Bulk(Some(next)), Reply::Array(keys)] = parts.as_slice() else {
                bail!("unexpected SCAN reply shape")
            };
            for k in keys {
                let Reply::Bulk(Some(k)) = k else { continue };
                let key = String::from_utf8_lossy(k).into_owned();
                let ns = namespace(&key);
                let entry = groups.entry(ns).or_default();
                entry.0 += 1;
                if entry.1 < per_group as u64
                    && let Reply::Int(bytes) = self.cmd(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]).await?
                {
                    entry.1 += 1;
                    entry.2 += bytes.max(0) as u64;
                }
                seen += 1;
            }
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" || seen >= max_keys {
                break;
            }
        }
        Ok(groups
            .into_iter()
            .map(|(ns, (count, sampled, bytes))| {
                (ns, (count, if sampled > 0 { bytes as f64 / sampled as f64 } else { 0.0 }))
            })
            .collect())
    }
}

pub type Groups = BTreeMap<String, (u64, f64)>;

/// The key without its last `:`-separated part (the hash or id), e.g. `gw:session:AbC` →
/// `gw:session`.
pub fn namespace(key: &str) -> String {
    match key.rsplit_once(':') {
        Some((ns, _)) => ns.to_string(),
        None => key.to_string(),
    }
}

async fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        bail!("Redis closed the connection");
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => bail!("Redis error: {rest}"),
        ":" => Reply::Int(rest.parse()?),
        "$" => {
            let n: i64 = rest.parse()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n: i64 = rest.parse()?;
            let mut items = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                items.push(Box::pin(read_reply(r)).await?);
            }
            Reply::Array(items)
        }
        other => bail!("unexpected Redis reply type {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_drop_the_last_part() {
        assert_eq!(namespace("session:abc"), "session");
        assert_eq!(namespace("bench:sid:xyz"), "bench:sid");
        assert_eq!(namespace("plain"), "plain");
    }
}
