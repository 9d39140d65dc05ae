import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TestSupport
import XCTest
@testable import Gateway
@testable import GatewayCore

/// `CONNECT` served on the socket loop (`LoopConnect`) against the same requests through
/// NIO's path: the same answers byte for byte, the same audit lines, and everything the
/// loop does not serve reaching NIO untouched.
final class LoopConnectTests: XCTestCase {
    /// Sends `chunks` to the proxy, pausing `pause` seconds between them, and returns all
    /// it answers until it closes (at most 10 s). A pause past the loop's wait for the first
    /// bytes sends a head in two reads, which the loop leaves to NIO.
    static func exchange(port: UInt16, _ chunks: [String], pause: Double = 0.4) throws -> String {
        let result = try Run.process(["/usr/bin/python3", "-c", """
            import socket, sys, time
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for index, chunk in enumerate(sys.argv[3:]):
                if index: time.sleep(float(sys.argv[2]))
                s.sendall(chunk.encode("latin-1"))
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
            except ConnectionResetError:
                data += b"<reset>"
            sys.stdout.write(data.decode("latin-1"))
            """, String(port), String(pause)] + chunks, timeout: 20)
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout
    }

    /// An audit line without what differs between two runs of the same request.
    static func shape(_ line: String) -> String {
        line.replacingOccurrences(of: #""(ts|ms|bytes_up|bytes_down)":("[^"]*"|[0-9]+),?"#, with: "", options: .regularExpression)
    }

    /// The proxy's counters once the readiness probe's connection (which sends nothing,
    /// so the loop passes it on) has been counted.
    private func settled(_ served: ServedProxy) -> LoopConnect.Counters {
        XCTAssertTrue(Wait.until { served.server.loopConnectCounters.passedOn == 1 }, "the readiness probe is passed on")
        return served.server.loopConnectCounters
    }

    private func startWeb() throws -> (BackgroundProcess, UInt16) {
        let webPort = TCP.freePort()
        let web = try BackgroundProcess(["/usr/bin/python3", TestPaths.fixture("web-server.py"), "--port", String(webPort)])
        XCTAssertTrue(Wait.forTCP(port: webPort), "the web server fixture did not start")
        return (web, webPort)
    }

    func testAWholeConnectHeadIsServedOnTheLoopAndAHeadInPiecesByNIOWithTheSameResult() async throws {
        let (web, webPort) = try startWeb()
        defer { web.stop() }
        let served = try ServedProxy(policy: "web.test:\(webPort)\nresolve web.test=127.0.0.1\nallow-private 127.0.0.1/32\n")
        let before = settled(served)

        let head = "CONNECT web.test:\(webPort) HTTP/1.1\r\nHost: web.test:\(webPort)\r\nUser-Agent: t/1\r\n\r\n"
        let inner = "GET /hello HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
        let whole = try Self.exchange(port: served.port, [head + inner])
        var counters = served.server.loopConnectCounters
        XCTAssertEqual(counters.served - before.served, 1, "a whole head in the first bytes is served by the loop")
        XCTAssertEqual(counters.passedOn, before.passedOn)

        let split = try Self.exchange(port: served.port, ["CONNECT web.test:\(webPort) HTTP/1.1\r\n", "Host: web.test:\(webPort)\r\nUser-Agent: t/1\r\n\r\n", inner])
        counters = served.server.loopConnectCounters
        XCTAssertEqual(counters.served - before.served, 1)
        XCTAssertEqual(counters.passedOn - before.passedOn, 1, "a head in pieces goes to NIO")

        for answer in [whole, split] {
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n"), answer)
            XCTAssertTrue(answer.contains("host=web.test path=/hello"), answer)
        }
        // HTTP/1.0 clients get their version back.
        let old = try Self.exchange(port: served.port, ["CONNECT web.test:\(webPort) HTTP/1.0\r\n\r\n" + inner])
        XCTAssertTrue(old.hasPrefix("HTTP/1.0 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n"), old)
        XCTAssertTrue(Wait.until { served.server.openConnections == 0 }, "finished tunnels free their place")

        try await served.stop()
        let allows = served.auditLines.filter { $0.contains("\"event\":\"egress_allow\"") }
        XCTAssertEqual(allows.count, 3, served.auditLines.joined(separator: "\n"))
        XCTAssertEqual(Set(allows.map(Self.shape)).count, 1, "both paths write the same line: \(allows)")
        XCTAssertTrue(allows[0].contains("\"via\":\"connect\"") && allows[0].contains("\"rule\":\"web.test:\(webPort)\""), allows[0])
    }

    func testRefusalsOnTheLoopAreTheBytesAndAuditLinesNIOWrites() async throws {
        let closedPort = TCP.freePort()
        let served = try ServedProxy(policy: "web.test:\(closedPort)\nresolve web.test=127.0.0.1\nallow-private 127.0.0.1/32\n")
        let before = settled(served)
        let cases: [(String, String, String)] = [
            ("CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n", "\r\n",
             "HTTP/1.1 403 airlock: other.test is not on the allowlist\r\n"),
            ("CONNECT other.test:443 HTTP/1.0\r\n", "\r\n", "HTTP/1.0 403 airlock: other.test is not on the allowlist\r\n"),
            ("CONNECT web.test:\(closedPort) HTTP/1.1\r\n", "\r\n",
             "HTTP/1.1 502 Bad Gateway\r\n"),
        ]
        for (start, end, status) in cases {
            let onLoop = try Self.exchange(port: served.port, [start + end])
            let throughNIO = try Self.exchange(port: served.port, [start, end])
            XCTAssertTrue(onLoop.hasPrefix(status), onLoop)
            XCTAssertEqual(onLoop, throughNIO, "the loop answers exactly as NIO does")
        }
        let denied = try Self.exchange(port: served.port, ["CONNECT other.test:443 HTTP/1.1\r\n\r\n"])
        XCTAssertTrue(denied.contains("\r\nX-Airlock-Denied: airlock: other.test is not on the allowlist; add it to /test/policy or pass --allow other.test\r\n"), denied)
        XCTAssertTrue(denied.hasSuffix("airlock: other.test is not on the allowlist; add it to /test/policy or pass --allow other.test\n"), denied)
        let refused = try Self.exchange(port: served.port, ["CONNECT web.test:\(closedPort) HTTP/1.1\r\n\r\n"])
        XCTAssertTrue(refused.contains("cannot connect to web.test:\(closedPort): Connection refused"), refused)
        let counters = served.server.loopConnectCounters
        XCTAssertEqual(counters.served - before.served, 5)
        XCTAssertEqual(counters.passedOn - before.passedOn, 3)
        XCTAssertTrue(Wait.until { served.server.openConnections == 0 }, "refused connections free their place")

        try await served.stop()
        let denials = served.auditLines.filter { $0.contains("\"event\":\"egress_deny\"") }
        // One line per refusal, never two: 3 + 3 pairs above, and the two last requests.
        XCTAssertEqual(denials.count, 8, served.auditLines.joined(separator: "\n"))
        let other = denials.filter { $0.contains("\"host\":\"other.test\"") }.map(Self.shape)
        XCTAssertEqual(other.count, 5)
        XCTAssertEqual(Set(other).count, 1, "the same line from both paths: \(other)")
        let failed = denials.filter { $0.contains("\"host\":\"web.test\"") }.map(Self.shape)
        XCTAssertEqual(failed.count, 3)
        XCTAssertEqual(Set(failed).count, 1, "the same line from both paths: \(failed)")
    }

    func testWhatTheLoopDoesNotServeReachesNIOUntouched() async throws {
        let (web, webPort) = try startWeb()
        defer { web.stop() }
        let served = try ServedProxy(policy: "web.test:\(webPort)\nresolve web.test=127.0.0.1\nallow-private 127.0.0.1/32\n")
        let before = settled(served)

        // A forwarded request, a malformed target, an obs-folded header and body-framing
        // headers: each answered by the full path. (A name that needs the resolver goes
        // there too: `DialerTests` shows that the loop's dial declines it.)
        let forwarded = try Self.exchange(port: served.port, ["GET http://web.test:\(webPort)/x HTTP/1.1\r\nHost: web.test:\(webPort)\r\nConnection: close\r\n\r\n"])
        XCTAssertTrue(forwarded.hasPrefix("HTTP/1.1 200 OK\r\n") && forwarded.contains("path=/x"), forwarded)
        let badTarget = try Self.exchange(port: served.port, ["CONNECT :443 HTTP/1.1\r\n\r\n"])
        XCTAssertTrue(badTarget.hasSuffix("\r\n\r\nairlock: malformed request: bad host :443\n"), badTarget)
        let folded = try Self.exchange(port: served.port, ["CONNECT web.test:\(webPort) HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n"])
        XCTAssertTrue(folded.contains("\r\n\r\nairlock: malformed HTTP request (invalid character in header)\n"), folded)
        let framed = try Self.exchange(port: served.port, ["CONNECT web.test:\(webPort) HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"])
        XCTAssertTrue(framed.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && framed.contains("airlock: malformed HTTP request"), framed)
        let framedEmpty = try Self.exchange(port: served.port, ["CONNECT web.test:\(webPort) HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + "GET /y HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"])
        XCTAssertTrue(framedEmpty.hasPrefix("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n") && framedEmpty.contains("path=/y"), framedEmpty)

        let counters = served.server.loopConnectCounters
        XCTAssertEqual(counters.served, before.served, "none of these is served on the loop")
        XCTAssertEqual(counters.passedOn - before.passedOn, 5)
        try await served.stop()
    }

    // MARK: - the head reader

    private func read(_ text: String, max: Int = 4096) -> ConnectHead? {
        Array(text.utf8).withUnsafeBytes { ConnectHead.read($0, maxLength: max) }
    }

    func testTheReaderTakesOnlyWholePlainConnectHeads() {
        XCTAssertEqual(read("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\nearly"),
                       ConnectHead(target: "a.test:443", minorVersion: 1, length: 49))
        XCTAssertEqual(read("CONNECT [2001:db8::1]:443 HTTP/1.0\r\n\r\n"),
                       ConnectHead(target: "[2001:db8::1]:443", minorVersion: 0, length: 38))
        for refused in [
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a\r\n",            // not yet whole
            "GET http://a.test/ HTTP/1.1\r\n\r\n",                    // not a CONNECT
            "connect a.test:443 HTTP/1.1\r\n\r\n",                    // method case
            "CONNECT  a.test:443 HTTP/1.1\r\n\r\n",                   // two spaces
            "CONNECT a.test:443 HTTP/2.0\r\n\r\n",                    // version
            "CONNECT a.test:443 HTTP/1.1\n\r\n",                      // bare LF
            "CONNECT a.test:443 HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n",    // obs-fold
            "CONNECT a.test:443 HTTP/1.1\r\nX A: 1\r\n\r\n",          // space in a name
            "CONNECT a.test:443 HTTP/1.1\r\nX-A : 1\r\n\r\n",         // space before the colon
            "CONNECT a.test:443 HTTP/1.1\r\nX-A: \u{7F}\r\n\r\n",     // DEL in a value
            "CONNECT a.test:443 HTTP/1.1\r\nX-A: caf\u{E9}\r\n\r\n",  // not ASCII
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            // Found by ConnectHeadFuzz: visible ASCII the decoder refuses in a target.
            "CONNECT [200b<::1]:8443 HTTP/1.0\r\n\r\n",
            "CONNECT a.test%2F:443 HTTP/1.1\r\n\r\n",
            "CONNECT user@a.test:443 HTTP/1.1\r\n\r\n",
            // Found by the test below: a comma in Host is a second Host to the full path.
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a,test:443\r\n\r\n",
        ] {
            XCTAssertNil(read(refused), refused.debugDescription)
        }
        let many = "CONNECT a.test:443 HTTP/1.1\r\n" + String(repeating: "X-A: 1\r\n", count: ConnectHead.maxHeaders + 1) + "\r\n"
        XCTAssertNil(read(many), "more headers than the reader takes")
        XCTAssertNil(read("CONNECT a.test:443 HTTP/1.1\r\nX-A: 1\r\n\r\n", max: 38), "longer than the head limit")
        XCTAssertNotNil(read("CONNECT a.test:443 HTTP/1.1\r\nX-A: 1\r\n\r\n", max: 39))
    }

    /// Whatever the reader takes, the full path (NIO's decoder, then `RequestValidation`)
    /// reads as the same request: the loop never decides on bytes the full path would read
    /// differently or refuse. Checked on every single-byte change of a set of heads.
    func testEveryHeadTheReaderTakesTheFullPathReadsAlike() throws {
        let seeds = [
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nProxy-Connection: keep-alive\r\nUser-Agent: curl/8\r\n\r\n",
            "CONNECT [2001:db8::1]:8443 HTTP/1.0\r\nhost:x\r\n\r\n",
        ]
        let replacements: [UInt8] = [0x00, 0x09, 0x0A, 0x0D, 0x20, 0x3A, 0x7F, 0x80, 0xFF, UInt8(ascii: "a"), UInt8(ascii: "H")]
            + Array("<>\"{}|\\^`%@/?#!$&'()*+,;=~_-.[]".utf8)
        var taken = 0
        for seed in seeds {
            let bytes = Array(seed.utf8)
            for index in bytes.indices {
                for replacement in replacements {
                    var changed = bytes
                    changed[index] = replacement
                    guard let head = changed.withUnsafeBytes({ ConnectHead.read($0, maxLength: 4096) }) else { continue }
                    taken += 1
                    let decoded = try Self.decode(Array(changed[..<head.length]))
                    XCTAssertEqual(decoded?.method, .CONNECT, String(decoding: changed, as: UTF8.self).debugDescription)
                    XCTAssertEqual(decoded?.uri, head.target)
                    XCTAssertEqual(decoded?.version, head.minorVersion == 0 ? .http1_0 : .http1_1)
                    if let decoded { XCTAssertNil(RequestValidation.problem(in: decoded), "\(decoded)") }
                }
            }
        }
        XCTAssertGreaterThan(taken, 100, "the changes include many the reader takes")
    }

    /// The head NIO's request decoder reads from `bytes`, or nil when it refuses them.
    static func decode(_ bytes: [UInt8]) throws -> HTTPRequestHead? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            return nil
        }
        guard case .head(let head)? = try channel.readInbound(as: HTTPServerRequestPart.self) else { return nil }
        return head
    }
}
