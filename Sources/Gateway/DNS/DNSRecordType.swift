/// A record type (TYPE / QTYPE).
package struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit type as on the wire.
    package var rawValue: UInt16
    package init(rawValue: UInt16) { self.rawValue = rawValue }

    // The types the responder names in audit events (RFC 1035, 3596, 2782, 6891, 9460).
    package static let a = DNSRecordType(rawValue: 1)
    package static let ns = DNSRecordType(rawValue: 2)
    package static let cname = DNSRecordType(rawValue: 5)
    package static let soa = DNSRecordType(rawValue: 6)
    package static let ptr = DNSRecordType(rawValue: 12)
    package static let mx = DNSRecordType(rawValue: 15)
    package static let txt = DNSRecordType(rawValue: 16)
    package static let aaaa = DNSRecordType(rawValue: 28)
    package static let srv = DNSRecordType(rawValue: 33)
    package static let opt = DNSRecordType(rawValue: 41)
    package static let svcb = DNSRecordType(rawValue: 64)
    package static let https = DNSRecordType(rawValue: 65)
    package static let any = DNSRecordType(rawValue: 255)

    private static let names: [UInt16: String] = [
        1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
        33: "SRV", 41: "OPT", 64: "SVCB", 65: "HTTPS", 255: "ANY",
    ]

    /// The mnemonic (`A`, `AAAA`), or `TYPE123` (RFC 3597) for others.
    package var description: String { Self.names[rawValue] ?? "TYPE\(rawValue)" }
}
