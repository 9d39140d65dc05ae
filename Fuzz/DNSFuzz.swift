import Gateway
import GatewayCore

/// The DNS wire path (`DNSResponder.respond`, which reads queries with `DNSWire` in place).
///
/// Invariants: an answer is at most 512 bytes, echoes the query's id, has QR set, carries
/// at most one question and one answer record, and answers a name only when the policy
/// allows it; a dropped query is a response (QR set) or shorter than a header; a refusal's
/// audit reason is one line.
private let policy = try! Policy.parse("""
    example.com
    *.pythonhosted.org
    !evil.example.com
    cidr 192.0.2.0/24
    """, source: "fuzz")
private let v4 = DNSResponder(gatewayAddress: IPAddress("10.200.0.1")!, sandbox: "fuzz")
private let v6 = DNSResponder(gatewayAddress: IPAddress("fd00::1")!, sandbox: "fuzz")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let query = Array(UnsafeBufferPointer(start: data, count: size))
    for responder in [v4, v6] {
        let outcome = responder.respond(to: query, policy: policy)
        guard let response = outcome.response else {
            invariant(query.count < 12 || query[2] & 0x80 != 0, "a query was dropped")
            continue
        }
        invariant(response.count >= 12 && response.count <= 512, "a response of \(response.count) bytes")
        invariant(response[0] == query[0] && response[1] == query[1], "the id is not echoed")
        invariant(response[2] & 0x80 != 0, "QR is not set")
        let questions = Int(response[4]) << 8 | Int(response[5])
        let answers = Int(response[6]) << 8 | Int(response[7])
        invariant(questions <= 1 && answers <= 1 && response[8] == 0 && response[9] == 0 && response[10] == 0 && response[11] == 0,
                  "counts \(questions)/\(answers) in a response")
        if let audit = outcome.audit {
            invariant(response[3] & 0x0F == 3, "a refused name not answered NXDOMAIN")
            invariant(answers == 0, "a refused name has an answer")
            invariant(!(audit.reason ?? "").contains("\n"), "an audit reason that is not one line")
        }
    }
    return 0
}
