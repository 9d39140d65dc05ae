/// Answers one DNS query from the policy alone; never forwards anything.
///
/// - Allowed names: `A` → the gateway address; `AAAA` and other types → NOERROR, no answer.
/// - `airlock.internal`: `A` (or `AAAA` for an IPv6 gateway) → the gateway address; the
///   gateway address's reverse name: `PTR` → `airlock.internal`.
/// - Everything else: NXDOMAIN and a `dns_deny` audit event.
/// - Malformed queries: FORMERR when the header could be read, otherwise dropped.
///   Opcodes other than QUERY: NOTIMP. Responses (QR set) are dropped, so two responders
///   cannot loop.
///
/// A pure value: the same query, policy and address give the same bytes.
package struct DNSResponder: Sendable {
    /// The address sandboxes reach the gateway on.
    package var gatewayAddress: IPAddress
    /// The TTL of answers, short so reloads take effect quickly.
    package var ttl: UInt32
    /// The sandbox named in audit events; nil lets the audit log fill it in.
    package var sandbox: String?

    /// The gateway's own name.
    package static let gatewayName = DNSName(labels: [Array("airlock".utf8), Array("internal".utf8)])

    package init(gatewayAddress: IPAddress, ttl: UInt32 = 5, sandbox: String? = nil) {
        self.gatewayAddress = gatewayAddress
        self.ttl = ttl
        self.sandbox = sandbox
    }

    /// What to send back and what to audit for one query.
    package struct Outcome: Equatable, Sendable {
        /// The response, or nil to drop the query.
        package var response: [UInt8]?
        /// A `dns_deny` event for refused names.
        package var audit: AuditEvent?
    }

    /// Answers `query` under `policy`.
    package func respond(to query: [UInt8], policy: Policy) -> Outcome {
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
            if name.matches(Self.gatewayName) {
                return Outcome(response: reply(.noError, questions: questions, answers: addressAnswer(for: question)), audit: nil)
            }
            if name.matches(DNSName.reverse(of: gatewayAddress)) {
                if question.type == .ptr || question.type == .any {
                    let ptr = DNSMessage.Record(name: name, type: .ptr, ttl: ttl, target: Self.gatewayName)
                    return Outcome(response: reply(.noError, questions: questions, answers: [ptr]), audit: nil)
                }
                return Outcome(response: reply(.noError, questions: questions), audit: nil)
            }
            if let host = name.hostName, policy.allowsName(host) {
                return Outcome(response: reply(.noError, questions: questions, answers: addressAnswer(for: question)), audit: nil)
            }
        }
        let shown = name.description
        let reason: String
        if question.recordClass != DNSMessage.classIN {
            reason = "\(shown): only class IN is answered"
        } else if let host = name.hostName, case .deny(let why) = policy.decide(host: host, port: 443) {
            reason = why
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
