/// The special-purpose class of an address, after the IANA IPv4 and IPv6
/// special-purpose address registries (RFC 6890 and successors).
///
/// Everything not `publicUnicast` is refused as a destination unless an `allow-private`
/// rule covers it. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4,
/// Teredo) take the class of the IPv4 address they carry.
package enum AddressClass: String, Sendable, CaseIterable {
    case publicUnicast = "public"
    case loopback
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    case privateUse = "private"
    /// RFC 6598 shared address space, 100.64/10 (carrier-grade NAT, some cloud metadata).
    case sharedCGNAT = "shared (CGNAT)"
    /// 169.254/16 (incl. cloud metadata 169.254.169.254) and fe80::/10.
    case linkLocal = "link-local"
    case multicast
    /// 0.0.0.0 and ::.
    case unspecified
    /// 0.0.0.0/8, "this network".
    case thisNetwork = "this-network"
    /// 240/4, IETF protocol assignments, deprecated and unassigned space.
    case reserved
    /// fc00::/7.
    case uniqueLocal = "unique-local"
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    case documentation
    /// 198.18/15, 2001:2::/48.
    case benchmarking
    /// 255.255.255.255.
    case broadcast

    /// The class of `address`.
    package static func of(_ address: IPAddress) -> AddressClass {
        block(of: address).addressClass
    }

    /// The registry block that `address` falls in, with its class. For IPv6 forms that
    /// embed IPv4, the IPv4 block. Public addresses get a nil range.
    package static func block(of address: IPAddress) -> (addressClass: AddressClass, range: CIDR?) {
        switch address {
        case .v4(let a):
            return v4Block(a)
        case .v6:
            if let server = address.teredoServer, let client = address.embeddedIPv4 {
                // Teredo: traffic goes to the server and on to the client; either special is refused.
                let s = v4Block(server), c = v4Block(client)
                return c.addressClass != .publicUnicast ? c : s
            }
            if let embedded = address.embeddedIPv4 { return v4Block(embedded) }
            for (range, addressClass) in v6Table where range.contains(address) {
                return (addressClass, addressClass == .publicUnicast ? nil : range)
            }
            return (.publicUnicast, nil)
        }
    }

    /// Whether an `allow-private` rule may permit this class. Unspecified, multicast and
    /// broadcast addresses are never a connection destination.
    package var mayBeAllowed: Bool {
        switch self {
        case .unspecified, .multicast, .broadcast: return false
        default: return true
        }
    }

    private static func v4Block(_ a: UInt32) -> (addressClass: AddressClass, range: CIDR?) {
        for (range, addressClass) in v4Table where range.contains(.v4(a)) {
            return (addressClass, addressClass == .publicUnicast ? nil : range)
        }
        return (.publicUnicast, nil)
    }

    private static func table(_ rows: [(String, AddressClass)]) -> [(CIDR, AddressClass)] {
        // Rows are literals in this file; a malformed one is dropped, which the tests catch.
        rows.compactMap { row in CIDR(row.0).map { ($0, row.1) } }
    }

    /// Most specific first.
    private static let v4Table: [(CIDR, AddressClass)] = table([
        ("0.0.0.0/32", .unspecified),
        ("255.255.255.255/32", .broadcast),
        ("192.0.0.9/32", .publicUnicast),     // Port Control Protocol anycast
        ("192.0.0.10/32", .publicUnicast),    // TURN anycast
        ("0.0.0.0/8", .thisNetwork),
        ("10.0.0.0/8", .privateUse),
        ("100.64.0.0/10", .sharedCGNAT),
        ("127.0.0.0/8", .loopback),
        ("169.254.0.0/16", .linkLocal),
        ("172.16.0.0/12", .privateUse),
        ("192.0.0.0/24", .reserved),          // IETF protocol assignments
        ("192.0.2.0/24", .documentation),
        ("192.88.99.0/24", .reserved),        // deprecated 6to4 relay anycast
        ("192.168.0.0/16", .privateUse),
        ("198.18.0.0/15", .benchmarking),
        ("198.51.100.0/24", .documentation),
        ("203.0.113.0/24", .documentation),
        ("224.0.0.0/4", .multicast),
        ("240.0.0.0/4", .reserved),
    ])

    /// Most specific first. Embedded-IPv4 forms are handled before this table.
    private static let v6Table: [(CIDR, AddressClass)] = table([
        ("::/128", .unspecified),
        ("::1/128", .loopback),
        ("64:ff9b:1::/48", .reserved),        // local-use NAT64 (RFC 8215)
        ("100::/64", .reserved),              // discard-only
        ("2001:2::/48", .benchmarking),
        ("2001:db8::/32", .documentation),
        ("2001::/23", .reserved),             // IETF protocol assignments
        ("3fff::/20", .documentation),
        ("5f00::/16", .reserved),             // SRv6 SIDs
        ("2000::/3", .publicUnicast),         // global unicast, after its special blocks
        ("fc00::/7", .uniqueLocal),
        ("fe80::/10", .linkLocal),
        ("fec0::/10", .reserved),             // deprecated site-local
        ("ff00::/8", .multicast),
        ("::/0", .reserved),                  // everything outside 2000::/3 is unassigned
    ])
}
