import NIOCore
import GatewayCore

/// Answers one DNS query from the policy alone; never forwards anything.
///
/// - Allowed names: `A` → the gateway address; `AAAA` and other types → NOERROR, no answer.
/// - `airlock.internal`: `A` (or `AAAA` for an IPv6 gateway) → the gateway address; the
///   gateway address's reverse name: `PTR` → `airlock.internal`.
/// - `gatewayNames` (the git hosts, which the git gateway serves and whose SSH port the
///   gateway answers): like `airlock.internal`, whatever the policy. Connections to them
///   on 80 and 443 are still decided by the policy.
/// - Everything else: NXDOMAIN and a `dns_deny` audit event.
/// - Malformed queries: FORMERR when the header could be read, otherwise dropped.
///   Opcodes other than QUERY: NOTIMP. Responses (QR set) are dropped, so two responders
///   cannot loop.
///
/// A pure value: the same query, policy and address give the same bytes. The query is read
/// in place (`DNSWire`) and the answer written straight into the outgoing buffer; the
/// bytes are those the reference codec in the tests (`DNSMessage`) would encode.
package struct DNSResponder: Sendable {
    /// The address sandboxes reach the gateway on.
    package var gatewayAddress: IPAddress {
        didSet { reverseNameWire = DNSWire.lowercaseWire(DNSName.reverse(of: gatewayAddress)) }
    }
    /// The TTL of answers, short so reloads take effect quickly.
    package var ttl: UInt32
    /// The sandbox named in audit events; nil lets the audit log fill it in.
    package var sandbox: String?

    /// The gateway's own name.
    package static let gatewayName = DNSName(labels: [Array("airlock".utf8), Array("internal".utf8)])

    /// `gatewayName` and the reverse name of the gateway address, lowercased in wire form,
    /// compared with each question name.
    private static let gatewayNameWire = DNSWire.lowercaseWire(DNSResponder.gatewayName)
    private var reverseNameWire: [UInt8]
    /// `gatewayNames`, lowercased in wire form.
    private let gatewayNamesWire: [[UInt8]]

    /// - Parameters:
    ///   - gatewayNames: host names answered with the gateway address whatever the policy;
    ///     names that are not host names are ignored.
    package init(gatewayAddress: IPAddress, ttl: UInt32 = 5, sandbox: String? = nil, gatewayNames: [String] = []) {
        self.gatewayAddress = gatewayAddress
        self.gatewayNamesWire = gatewayNames.compactMap { name in
            guard let host = try? HostName.normalise(name) else { return nil }
            return DNSWire.lowercaseWire(DNSName(labels: host.split(separator: ".").map { Array($0.utf8) }))
        }
        self.ttl = ttl
        self.sandbox = sandbox
        self.reverseNameWire = DNSWire.lowercaseWire(DNSName.reverse(of: gatewayAddress))
    }

    /// What to send back and what to audit for one query.
    package struct Outcome: Equatable, Sendable {
        /// The response, or nil to drop the query.
        package var response: [UInt8]?
        /// A `dns_deny` event for refused names.
        package var audit: AuditEvent?
    }

    /// Answers `query` under `policy`: `respond(to:policy:into:)` with arrays, for tests
    /// and callers that hold bytes.
    package func respond(to query: [UInt8], policy: Policy) -> Outcome {
        var buffer = ByteBuffer()
        let reply = query.withUnsafeBytes { respond(to: $0, policy: policy, into: &buffer) }
        switch reply {
        case .drop:
            return Outcome(response: nil, audit: nil)
        case .answer(let audit):
            return Outcome(response: Array(buffer.readableBytesView), audit: audit)
        }
    }

    /// What `respond(to:policy:into:)` did with a query.
    package enum Reply: Equatable, Sendable {
        /// Nothing written: the query is dropped.
        case drop
        /// The response was appended; `audit` is a `dns_deny` event for a refused name.
        case answer(audit: AuditEvent?)
    }

    /// Answers `query` under `policy` by appending the response to `out`, read in place:
    /// the response is the query's header and question with the flags and counts
    /// changed, plus at most one record whose owner is a pointer to the question name.
    package func respond(to query: UnsafeRawBufferPointer, policy: Policy, into out: inout ByteBuffer) -> Reply {
        respond(to: query, rules: DNSNameRules(policy), into: &out)
    }

    /// `respond(to:policy:into:)` with the policy's rules laid out for DNS already, as the
    /// handlers keep them between queries. Allowed names then take no allocation at all
    /// (unless `out` must grow); refused ones build their audit event.
    package func respond(to query: UnsafeRawBufferPointer, rules: DNSNameRules, into out: inout ByteBuffer) -> Reply {
        guard query.count >= 12 else { return .drop }
        let id = DNSWire.uint16(query, at: 0)
        let flags = DNSWire.uint16(query, at: 2)
        // A response (QR set) is never answered, so two responders cannot loop.
        guard flags & 0x8000 == 0 else { return .drop }
        // Keep the opcode and RD of the query; QR, AA and RA set (this server is the
        // authority for everything the sandbox can resolve).
        let baseFlags: UInt16 = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080
        func headerOnly(_ rcode: DNSResponseCode) -> Reply {
            out.writeMultipleIntegers(id, baseFlags | UInt16(rcode.rawValue), UInt16(0), UInt16(0), UInt16(0), UInt16(0))
            return .answer(audit: nil)
        }
        guard (flags >> 11) & 0xF == 0 else { return headerOnly(.notImplemented) }
        guard let question = DNSWire.checkQuery(query) else { return headerOnly(.formatError) }

        return withUnsafeTemporaryAllocation(byteCount: 3 * 256, alignment: 1) { scratch -> Reply in
            // The question name lowercased in wire form (at most 255 bytes), and dotted,
            // lowercased and as sent, for when it is a host name (letters, digits, '-'
            // and '_' only).
            let wire = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<256])
            let dotted = UnsafeMutableRawBufferPointer(rebasing: scratch[256..<512])
            let sent = UnsafeMutableRawBufferPointer(rebasing: scratch[512..<768])
            var wireLength = 0
            var dottedLength = 0
            var isHostName = true
            DNSWire.forEachLabel(query, at: question.nameStart) { offset, count in
                if dottedLength > 0 {
                    dotted[dottedLength] = UInt8(ascii: ".")
                    sent[dottedLength] = UInt8(ascii: ".")
                    dottedLength += 1
                }
                wire[wireLength] = UInt8(count)
                wireLength += 1
                for i in offset..<(offset + count) {
                    let original = query[i]
                    var byte = original
                    if byte >= 0x41 && byte <= 0x5A { byte |= 0x20 }
                    if !(byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                         || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                         || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))) {
                        isHostName = false
                    }
                    wire[wireLength] = byte
                    wireLength += 1
                    dotted[dottedLength] = byte
                    sent[dottedLength] = original
                    dottedLength += 1
                }
            }
            wire[wireLength] = 0
            wireLength += 1
            if dottedLength == 0 { isHostName = false }
            let name = UnsafeRawBufferPointer(rebasing: wire[0..<wireLength])
            let host = UnsafeRawBufferPointer(rebasing: dotted[0..<dottedLength])

            if question.recordClass == DNSWire.classIN {
                if Self.equal(name, Self.gatewayNameWire) {
                    return answer(query, question, id: id, flags: baseFlags, record: addressRecord(question.type), into: &out)
                }
                if gatewayNamesWire.contains(where: { Self.equal(name, $0) }) {
                    return answer(query, question, id: id, flags: baseFlags, record: addressRecord(question.type), into: &out)
                }
                if Self.equal(name, reverseNameWire) {
                    let ptr = question.type == DNSRecordType.ptr.rawValue || question.type == DNSRecordType.any.rawValue
                    return answer(query, question, id: id, flags: baseFlags, record: ptr ? .pointer : nil, into: &out)
                }
                if isHostName && rules.allowsName(lowercaseBytes: host) {
                    return answer(query, question, id: id, flags: baseFlags, record: addressRecord(question.type), into: &out)
                }
                // A service lookup under an allowed name (`_http._tcp.deb.debian.org` SRV,
                // `_8443._https.api.example.com` HTTPS), which resolvers and apt make on
                // their own: no such records, and nothing refused worth a line.
                if isHostName, question.type != DNSRecordType.a.rawValue, question.type != DNSRecordType.aaaa.rawValue,
                   let owner = Self.afterServiceLabels(host), rules.allowsName(lowercaseBytes: owner) {
                    return answer(query, question, id: id, flags: baseFlags, record: nil, into: &out)
                }
            }
            // Refused. A host name is shown as sent (it needs no escapes); others in
            // presentation form.
            let shown = isHostName ? String(decoding: UnsafeRawBufferPointer(rebasing: sent[0..<dottedLength]), as: UTF8.self)
                                   : DNSWire.name(query, at: question.nameStart).description
            let reason: String
            if question.recordClass != DNSWire.classIN {
                reason = "\(shown): only class IN is answered"
            } else if isHostName {
                if let why = rules.denialReason(lowercaseBytes: host) {
                    reason = why
                } else if case .deny(let why) = rules.policy.decide(host: shown, port: 443) {
                    reason = why.description
                } else {
                    reason = "\(shown) is an address, not a name to resolve"
                }
            } else {
                reason = "\(shown) is not a valid host name"
            }
            let event = AuditEvent(.dnsDeny, sandbox: sandbox, via: .dns, host: shown, reason: reason,
                                   qtype: DNSRecordType(rawValue: question.type).description)
            _ = answer(query, question, id: id, flags: baseFlags | UInt16(DNSResponseCode.nameError.rawValue), record: nil, into: &out)
            return .answer(audit: event)
        }
    }

    /// The name after the leading `_`-labels of a service name (`_http._tcp.NAME` → `NAME`);
    /// nil when the name does not start with one, or is nothing but them.
    static func afterServiceLabels(_ name: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var start = 0
        while start < name.count, name[start] == UInt8(ascii: "_") {
            guard let dot = name[start...].firstIndex(of: UInt8(ascii: ".")) else { return nil }
            start = dot + 1
        }
        guard start > 0, start < name.count else { return nil }
        return UnsafeRawBufferPointer(rebasing: name[start...])
    }

    /// The one record an answer may carry.
    private enum AnswerRecord {
        /// The gateway address (A or AAAA, as asked).
        case address
        /// PTR → `airlock.internal`.
        case pointer
    }

    /// The gateway address when the question asks for its family, else nothing.
    private func addressRecord(_ type: UInt16) -> AnswerRecord? {
        switch (type, gatewayAddress) {
        case (DNSRecordType.a.rawValue, .v4), (DNSRecordType.aaaa.rawValue, .v6): return .address
        default: return nil
        }
    }

    /// Writes the header, the question (its name uncompressed, in the query's case) and
    /// `record`, whose owner name is a pointer to the question at offset 12.
    private func answer(_ query: UnsafeRawBufferPointer, _ question: DNSWire.Question, id: UInt16, flags: UInt16,
                        record: AnswerRecord?, into out: inout ByteBuffer) -> Reply {
        out.writeMultipleIntegers(id, flags, UInt16(1), UInt16(record == nil ? 0 : 1), UInt16(0), UInt16(0))
        if question.nameUsesPointer {
            DNSWire.forEachLabel(query, at: question.nameStart) { offset, count in
                out.writeInteger(UInt8(count))
                out.writeBytes(UnsafeRawBufferPointer(rebasing: query[offset..<(offset + count)]))
            }
            out.writeInteger(UInt8(0))
        } else {
            out.writeBytes(UnsafeRawBufferPointer(rebasing: query[question.nameStart..<question.nameEnd]))
        }
        out.writeMultipleIntegers(question.type, question.recordClass)
        switch record {
        case nil:
            break
        case .address:
            out.writeMultipleIntegers(UInt16(0xC00C), question.type, DNSWire.classIN, ttl)
            switch gatewayAddress {
            case .v4(let value): out.writeMultipleIntegers(UInt16(4), value)
            case .v6(let high, let low): out.writeMultipleIntegers(UInt16(16), high, low)
            }
        case .pointer:
            out.writeMultipleIntegers(UInt16(0xC00C), DNSRecordType.ptr.rawValue, DNSWire.classIN, ttl,
                                      UInt16(Self.gatewayNameWire.count))
            out.writeBytes(Self.gatewayNameWire)
        }
        return .answer(audit: nil)
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        a.count == b.count && b.withUnsafeBytes { memcmp(a.baseAddress!, $0.baseAddress!, a.count) == 0 }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
