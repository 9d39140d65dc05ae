@testable import Gateway
@testable import GatewayCore

/// The DNS responder as it was before it answered in place (commit 58f7f8e): it parses
/// the query into a `DNSMessage` and encodes the answer with `DNSMessage.bytes()`. Kept
/// here, unchanged, as the reference the in-place responder must match byte for byte.
struct ReferenceDNSResponder: Sendable {
    /// The address sandboxes reach the gateway on.
    var gatewayAddress: IPAddress
    /// The TTL of answers, short so reloads take effect quickly.
    var ttl: UInt32
    /// The sandbox named in audit events; nil lets the audit log fill it in.
    var sandbox: String?

    init(gatewayAddress: IPAddress, ttl: UInt32 = 5, sandbox: String? = nil) {
        self.gatewayAddress = gatewayAddress
        self.ttl = ttl
        self.sandbox = sandbox
    }

    /// What to send back and what to audit for one query.
    struct Outcome: Equatable, Sendable {
        /// The response, or nil to drop the query.
        var response: [UInt8]?
        /// A `dns_deny` event for refused names.
        var audit: AuditEvent?
    }

    /// Answers `query` under `policy`.
    func respond(to query: [UInt8], policy: Policy) -> Outcome {
        guard let header = DNSMessage.Header(bytes: query), !header.isResponse else {
            return Outcome(response: nil, audit: nil)
        }
        // Keep the opcode and RD of the query; QR, AA and RA set (this server is the
        // authority for everything the sandbox can resolve).
        let baseFlags: UInt16 = 0x8000 | (header.flags & 0x7800) | 0x0400 | (header.flags & 0x0100) | 0x0080
        func reply(_ rcode: DNSResponseCode, questions: [DNSMessage.Question] = [], answers: [DNSMessage.Record] = []) -> [UInt8] {
            DNSMessage(header: .init(id: header.id, flags: baseFlags | UInt16(rcode.rawValue)),
                       questions: questions, answers: answers).bytes()
        }
        guard header.opcode == 0 else {
            return Outcome(response: reply(.notImplemented), audit: nil)
        }
        guard header.questionCount == 1, let message = try? DNSMessage(parsing: query) else {
            return Outcome(response: reply(.formatError), audit: nil)
        }
        let question = message.questions[0]
        let questions = [question]
        let name = question.name

        if question.recordClass == DNSMessage.classIN {
            if name.matches(DNSResponder.gatewayName) {
                return Outcome(response: reply(.noError, questions: questions, answers: addressAnswer(for: question)), audit: nil)
            }
            if name.matches(DNSName.reverse(of: gatewayAddress)) {
                if question.type == .ptr || question.type == .any {
                    let ptr = DNSMessage.Record(name: name, type: .ptr, ttl: ttl, target: DNSResponder.gatewayName)
                    return Outcome(response: reply(.noError, questions: questions, answers: [ptr]), audit: nil)
                }
                return Outcome(response: reply(.noError, questions: questions), audit: nil)
            }
            if let host = name.hostName, policy.allowsName(host) {
                return Outcome(response: reply(.noError, questions: questions, answers: addressAnswer(for: question)), audit: nil)
            }
            // Service lookups (`_http._tcp.NAME`, not A or AAAA) under an allowed NAME: no data, no line.
            if let host = name.hostName, question.type != .a, question.type != .aaaa {
                let labels = host.split(separator: ".", omittingEmptySubsequences: false)
                let service = labels.prefix { $0.hasPrefix("_") }
                if !service.isEmpty, service.count < labels.count,
                   policy.allowsName(labels.dropFirst(service.count).joined(separator: ".")) {
                    return Outcome(response: reply(.noError, questions: questions), audit: nil)
                }
            }
        }
        let shown = name.description
        let reason: String
        if question.recordClass != DNSMessage.classIN {
            reason = "\(shown): only class IN is answered"
        } else if let host = name.hostName, case .deny(let why) = policy.decide(host: host, port: 443) {
            reason = why.description
        } else if name.hostName == nil {
            reason = "\(shown) is not a valid host name"
        } else {
            reason = "\(shown) is an address, not a name to resolve"
        }
        let event = AuditEvent(.dnsDeny, sandbox: sandbox, via: .dns, host: shown, reason: reason, qtype: question.type.description)
        return Outcome(response: reply(.nameError, questions: questions), audit: event)
    }

    /// The gateway address when the question asks for its family, else nothing.
    private func addressAnswer(for question: DNSMessage.Question) -> [DNSMessage.Record] {
        switch (question.type, gatewayAddress) {
        case (.a, .v4), (.aaaa, .v6):
            return [DNSMessage.Record(name: question.name, type: question.type, ttl: ttl, data: gatewayAddress.bytes)]
        default:
            return []
        }
    }
}
