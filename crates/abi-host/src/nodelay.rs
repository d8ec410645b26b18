//! Turns off Nagle's algorithm on this process's sockets to the engine.
//!
//! rivet-envoy-client 2.3.19 opens the host→engine envoy WebSocket with
//! Nagle enabled, so small replies wait for the peer's delayed ACK: every
//! WebSocket action round trip costs ~40 ms more (measured: p50 44 ms before,
//! the reference measured 7 ms with TCP_NODELAY). The crate offers no option,
//! so we set TCP_NODELAY on our own sockets whose peer is the engine, found
//! through `/proc/self/fd`; a periodic pass covers reconnects.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

/// How often to look for new engine sockets (the envoy reconnects on its own).
pub const SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Sets TCP_NODELAY on every open TCP socket of this process connected to
/// `peer`; returns how many were changed.
pub fn set_on_sockets_to(peer: SocketAddr) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let mut changed = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .map(|target| target.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if is_socket && peer_of(fd) == Some(peer) && !nodelay_of(fd) && set_nodelay(fd) {
            changed += 1;
        }
    }
    changed
}

/// The remote address of a connected IPv4/IPv6 TCP socket.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; zeroed is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is large enough for any address and `len` says so;
    // getpeername on a non-socket or unconnected fd only returns an error.
    let rc = unsafe { libc::getpeername(fd, (&raw mut storage).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let addr = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
            let ip = IpAddr::from(u32::from_be(addr.sin_addr.s_addr).to_be_bytes());
            Some(SocketAddr::new(ip, u16::from_be(addr.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let addr = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(IpAddr::from(addr.sin6_addr.s6_addr), u16::from_be(addr.sin6_port)))
        }
        _ => None,
    }
}

fn nodelay_of(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reading an int-sized option into an int with its size.
    let rc = unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut value).cast(), &mut len)
    };
    rc == 0 && value != 0
}

fn set_nodelay(fd: RawFd) -> bool {
    let value: libc::c_int = 1;
    // SAFETY: setting an int option from an int of the right size; the fd is
    // one of ours and stays open (owned by the envoy's TcpStream).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// The socket address of an `http://host:port` endpoint, if it is an IP.
pub fn endpoint_addr(endpoint: &str) -> Option<SocketAddr> {
    let rest = endpoint.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host == "localhost" { IpAddr::from([127, 0, 0, 1]) } else { host.parse().ok()? };
    Some(SocketAddr::new(ip, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn sets_nodelay_only_on_sockets_to_the_peer() {
        let engine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_engine = std::net::TcpStream::connect(engine.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!nodelay_of(to_engine.as_raw_fd()));
        assert!(set_on_sockets_to(engine.local_addr().unwrap()) >= 1);
        assert!(nodelay_of(to_engine.as_raw_fd()), "the engine socket gets TCP_NODELAY");
        assert!(!nodelay_of(to_other.as_raw_fd()), "other sockets are left alone");
        assert_eq!(set_on_sockets_to(engine.local_addr().unwrap()), 0, "a second pass changes nothing");
    }

    #[test]
    fn parses_loopback_endpoints() {
        assert_eq!(endpoint_addr("http://127.0.0.1:6420"), Some("127.0.0.1:6420".parse().unwrap()));
        assert_eq!(endpoint_addr("http://localhost:7000/"), Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(endpoint_addr("http://[::1]:80"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(endpoint_addr("https://rivet.example.com"), None);
    }
}
