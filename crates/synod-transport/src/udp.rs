//! UDP sockets sized for bursts: QUIC rides on datagrams, and a datagram
//! that finds the socket's receive buffer full is dropped by the kernel.
//!
//! With Linux's default of 208 KiB, a leader answering a thousand clients
//! lost thousands of packets a second here (`ss -uam` showed the drops), and
//! every loss cost a QUIC retransmission and a smaller congestion window:
//! throughput fell and p99 latency rose tenfold. So every socket asks for
//! [`BUFFER`] each way; the kernel caps the request at `net.core.rmem_max`
//! and `wmem_max`, and a cap far below it is logged with the sysctl to raise.

use std::net::{SocketAddr, UdpSocket};

use socket2::SockRef;

/// The receive and send buffer each socket asks for.
pub(crate) const BUFFER: usize = 8 << 20;

/// Below this a warning names the sysctl to raise.
const WARN_BELOW: usize = 1 << 20;

/// Binds `addr` and sizes its buffers.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    size_buffers(&socket);
    Ok(socket)
}

/// Asks for [`BUFFER`] bytes of receive and send buffer; returns what the
/// kernel granted (receive, send). Failures only log: a small buffer is slow, not wrong.
pub(crate) fn size_buffers(socket: &UdpSocket) -> (usize, usize) {
    let sock = SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(BUFFER);
    let _ = sock.set_send_buffer_size(BUFFER);
    let recv = sock.recv_buffer_size().unwrap_or(0);
    let send = sock.send_buffer_size().unwrap_or(0);
    if recv < WARN_BELOW {
        tracing::warn!(
            bytes = recv,
            "small UDP receive buffer: packets will be dropped under load; raise it with `sysctl -w net.core.rmem_max={BUFFER}`"
        );
    }
    if send < WARN_BELOW {
        tracing::warn!(
            bytes = send,
            "small UDP send buffer; raise it with `sysctl -w net.core.wmem_max={BUFFER}`"
        );
    }
    (recv, send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_past_the_linux_default() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let default = {
            let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
            SockRef::from(&plain).recv_buffer_size().unwrap()
        };
        let (recv, _) = size_buffers(&socket);
        // The kernel caps the request at net.core.rmem_max; wherever that
        // is above the default, the socket must have taken more.
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if max > default {
            assert!(recv > default, "receive buffer {recv} not above the default {default}");
        }
    }
}
