//! `ringway proxy-config`: reads a running instance's admin API and prints
//! listeners, routes, clusters and endpoints as aligned tables, the way
//! `istioctl proxy-config` does for Envoy.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

/// Where the admin API is by default (Envoy's customary port).
const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The `proxy-config` help text.
pub fn usage() -> &'static str {
    "USAGE: ringway proxy-config listeners|routes|clusters|endpoints|dump [--admin ADDRESS] [-o table|json]

  listeners   listener names, addresses and the route configs they serve
  routes      every route: route config, virtual host, domains, match, destination
  clusters    clusters with discovery type, LB policy and endpoint count
  endpoints   every endpoint with its health status and cluster
  dump        the whole /config_dump

  --admin ADDRESS     the instance's admin address: HOST:PORT, or a pipe's
                      /path or @abstract-name (default 127.0.0.1:9901)
  -o table|json       output format (default table)
"
}

/// Runs `proxy-config` with its arguments (after the word itself);
/// returns the text to print.
pub fn run(args: &[String]) -> Result<String, String> {
    let mut what = None;
    let mut admin = DEFAULT_ADMIN.to_string();
    let mut json = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--admin" => admin = it.next().ok_or("--admin needs an address")?.clone(),
            "-o" | "--output" => {
                json = match it.next().map(String::as_str) {
                    Some("json") => true,
                    Some("table") | Some("short") => false,
                    other => return Err(format!("-o: expected table or json, got {other:?}")),
                }
            }
            "-h" | "--help" => return Ok(usage().to_string()),
            a if a.starts_with("--admin=") => admin = a["--admin=".len()..].to_string(),
            a if what.is_none() && !a.starts_with('-') => what = Some(a.to_string()),
            a => return Err(format!("unknown argument {a:?}\n{}", usage())),
        }
    }
    let what = what.ok_or_else(|| usage().to_string())?;
    let get = |path: &str| fetch_json(&admin, path);
    let (table, raw) = match what.as_str() {
        "listeners" | "listener" | "l" => {
            let dump = get("/config_dump")?;
            let bound = get("/listeners?format=json")?;
            let raw = sections(&dump, &["static_listeners", "dynamic_listeners"]);
            (listeners(&dump, &bound), raw)
        }
        "routes" | "route" | "r" => {
            let dump = get("/config_dump")?;
            (routes(&dump), section(&dump, "static_route_configs"))
        }
        "clusters" | "cluster" | "c" => {
            let dump = get("/config_dump")?;
            let status = get("/clusters?format=json")?;
            let raw = sections(&dump, &["static_clusters", "dynamic_active_clusters"]);
            (clusters(&dump, &status), raw)
        }
        "endpoints" | "endpoint" | "ep" => {
            let status = get("/clusters?format=json")?;
            (endpoints(&status), status)
        }
        "dump" | "all" => {
            let dump = get("/config_dump")?;
            return Ok(pretty(&dump));
        }
        other => return Err(format!("unknown resource {other:?}\n{}", usage())),
    };
    Ok(if json { pretty(&raw) } else { table })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// GETs `path` from the admin API at `admin` and parses the JSON body.
fn fetch_json(admin: &str, path: &str) -> Result<Value, String> {
    let raw =
        exchange(admin, path).map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{admin}{path}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let line = head.lines().next().unwrap_or_default();
        return Err(format!("{admin}{path}: {line}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{admin}{path}: invalid JSON: {e}"))
}

/// Sends one `GET path` to the admin API at `admin` (TCP, or a pipe when it
/// starts with `/` or `@`) and reads the whole response.
fn exchange(admin: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    let timeout = Some(Duration::from_secs(10));
    if admin.starts_with(['/', '@']) {
        let stream = match admin.strip_prefix('@') {
            Some(name) => UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?,
            None => UnixStream::connect(admin)?,
        };
        stream.set_read_timeout(timeout)?;
        round_trip(stream, request.as_bytes())
    } else {
        let stream = TcpStream::connect(admin)?;
        stream.set_read_timeout(timeout)?;
        round_trip(stream, request.as_bytes())
    }
}

/// Writes `request` and reads the response until the server closes.
fn round_trip(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// The items of one repeated field across the dump's configs.
fn section(dump: &Value, field: &str) -> Value {
    let items: Vec<Value> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.get(field)?.as_array().cloned())
        .flatten()
        .collect();
    Value::Array(items)
}

/// The entries of several dump fields, in order.
fn sections(dump: &Value, fields: &[&str]) -> Value {
    let all = fields.iter().flat_map(|f| match section(dump, f) {
        Value::Array(items) => items,
        _ => Vec::new(),
    });
    Value::Array(all.collect())
}

/// The listeners (`listeners`) or clusters of a dump, static then dynamic
/// active ones; and, after the table, the resources whose last update was
/// refused, with when and why.
fn resources(dump: &Value, listeners: bool) -> (Vec<Value>, Vec<Vec<String>>) {
    let (static_field, dynamic_field, inner) = match listeners {
        true => (
            "static_listeners",
            "dynamic_listeners",
            "/active_state/listener",
        ),
        false => ("static_clusters", "dynamic_active_clusters", "/cluster"),
    };
    let key = inner.rsplit('/').next().unwrap_or_default();
    let mut active: Vec<Value> = section(dump, static_field)
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e[key].clone())
        .collect();
    let mut refused = Vec::new();
    for entry in section(dump, dynamic_field)
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = entry.pointer(inner) {
            active.push(r.clone());
        }
        if let Some(e) = entry.get("error_state") {
            refused.push(vec![
                text(&e["failed_configuration"]["name"]),
                text(&e["version_info"]),
                text(&e["last_update_attempt"]),
                text(&e["details"]),
            ]);
        }
    }
    (active, refused)
}

/// A table, then the refused updates' table when there are any.
fn with_refused(table_text: String, refused: Vec<Vec<String>>) -> String {
    if refused.is_empty() {
        return table_text;
    }
    let header = ["REFUSED", "VERSION", "AT", "ERROR"];
    format!("{table_text}\n{}", table(&header, refused))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Aligns rows under a header, columns separated by at least three spaces.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(&cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The HTTP connection managers of a listener.
fn managers(listener: &Value) -> Vec<&Value> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
        .map(|f| &f["typed_config"])
        .collect()
}

/// An `Address` message as its host and port text; a pipe is its path
/// and no port.
fn address_text(addr: &Value) -> (String, String) {
    match addr.get("pipe") {
        Some(pipe) => (text(&pipe["path"]), String::new()),
        None => {
            let sa = &addr["socket_address"];
            (text(&sa["address"]), text(&sa["port_value"]))
        }
    }
}

fn listeners(dump: &Value, bound: &Value) -> String {
    let bound_addr = |name: &str| {
        bound["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .map(|l| l["local_address"].clone())
    };
    let (active, refused) = resources(dump, true);
    let rows = active
        .iter()
        .map(|l| {
            let name = text(&l["name"]);
            let addr = bound_addr(&name).unwrap_or_else(|| l["address"].clone());
            let (host, port) = address_text(&addr);
            let destinations: Vec<String> = managers(l)
                .iter()
                .map(|hcm| format!("Route: {}", text(&hcm["route_config"]["name"])))
                .collect();
            vec![name, host, port, "ALL".to_string(), destinations.join(", ")]
        })
        .collect();
    let header = ["NAME", "ADDRESS", "PORT", "MATCH", "DESTINATION"];
    with_refused(table(&header, rows), refused)
}

fn route_match(m: &Value) -> String {
    if let Some(p) = m["prefix"].as_str() {
        format!("{p}*")
    } else if let Some(p) = m["path"].as_str() {
        p.to_string()
    } else {
        m.to_string()
    }
}

fn route_destination(r: &Value) -> String {
    if let Some(action) = r.get("route") {
        let mut d = format!("cluster: {}", text(&action["cluster"]));
        if let Some(rewrite) = action["prefix_rewrite"].as_str() {
            d.push_str(&format!(" (prefix_rewrite {rewrite})"));
        }
        d
    } else if let Some(direct) = r.get("direct_response") {
        format!("direct_response: {}", text(&direct["status"]))
    } else {
        "-".to_string()
    }
}

fn routes(dump: &Value) -> String {
    let mut rows = Vec::new();
    for entry in section(dump, "static_route_configs")
        .as_array()
        .into_iter()
        .flatten()
    {
        let rc = &entry["route_config"];
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<String> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            for r in vh["routes"].as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&rc["name"]),
                    text(&vh["name"]),
                    domains.join(","),
                    route_match(&r["match"]),
                    route_destination(r),
                ]);
            }
        }
    }
    table(
        &["NAME", "VHOST NAME", "DOMAINS", "MATCH", "DESTINATION"],
        rows,
    )
}

fn clusters(dump: &Value, status: &Value) -> String {
    let endpoint_count = |name: &str| {
        status["cluster_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["host_statuses"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let (active, refused) = resources(dump, false);
    let rows = active
        .iter()
        .map(|c| {
            let name = text(&c["name"]);
            let or = |v: &Value, default: &str| {
                let t = text(v);
                if t.is_empty() {
                    default.to_string()
                } else {
                    t
                }
            };
            vec![
                name.clone(),
                or(&c["type"], "STATIC"),
                or(&c["lb_policy"], "ROUND_ROBIN"),
                endpoint_count(&name).to_string(),
                or(&c["connect_timeout"], "5s"),
            ]
        })
        .collect();
    let header = ["NAME", "TYPE", "LB POLICY", "ENDPOINTS", "CONNECT TIMEOUT"];
    with_refused(table(&header, rows), refused)
}

fn endpoints(status: &Value) -> String {
    let mut rows = Vec::new();
    for c in status["cluster_statuses"].as_array().into_iter().flatten() {
        for h in c["host_statuses"].as_array().into_iter().flatten() {
            let endpoint = match address_text(&h["address"]) {
                (path, port) if port.is_empty() => path,
                (host, port) => format!("{host}:{port}"),
            };
            rows.push(vec![
                endpoint,
                text(&h["health_status"]["eds_health_status"]),
                "OK".to_string(),
                text(&h["weight"]),
                text(&c["name"]),
            ]);
        }
    }
    table(
        &["ENDPOINT", "STATUS", "OUTLIER CHECK", "WEIGHT", "CLUSTER"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A     LONGER\nxyz   1\n");
    }
}
