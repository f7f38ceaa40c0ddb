//! Address parsing shared by the flags that take `[HOST][:PORT]`.

/// Splits `host:port`, `[v6]:port`, `host`, `:port` or a bare IPv6 address into host and optional port.
/// Returns `None` for malformed brackets. The host may be empty (`:port`).
pub fn split_host_port(address: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match address.matches(':').count() {
        0 => Some((address, None)),
        1 => address.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => Some((address, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn splits_every_form() {
        assert_eq!(split_host_port("a:1"), Some(("a", Some("1"))));
        assert_eq!(split_host_port(":1"), Some(("", Some("1"))));
        assert_eq!(split_host_port("a"), Some(("a", None)));
        assert_eq!(split_host_port("[::1]:2"), Some(("::1", Some("2"))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port("[::1]x"), None);
    }
}
