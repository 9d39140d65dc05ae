import NIOCore

/// Finds the server name (SNI) in the first bytes a TLS client sends.
///
/// Handles a ClientHello split over several TLS records and over several reads. Only
/// parses; never decrypts or answers.
package enum ClientHello {
    /// What the bytes seen so far say.
    package enum Peek: Equatable, Sendable {
        /// The ClientHello is not complete yet.
        case needMoreBytes
        /// The ClientHello names this server (as sent; not yet validated).
        case serverName(String)
        /// A complete ClientHello without a server name.
        case noServerName
        /// Not a TLS ClientHello; one line saying why.
        case invalid(String)
    }

    /// Examines `buffer` (not consumed) for a complete ClientHello.
    package static func peek(_ buffer: ByteBuffer) -> Peek {
        var records = buffer
        var handshake = ByteBuffer()
        // Reassemble the handshake layer from consecutive handshake records.
        while true {
            guard records.readableBytes >= 5 else { break }
            guard let type: UInt8 = records.getInteger(at: records.readerIndex),
                  let major: UInt8 = records.getInteger(at: records.readerIndex + 1),
                  let length: UInt16 = records.getInteger(at: records.readerIndex + 3) else { break }
            guard type == 0x16 else { return .invalid("not a TLS handshake record (type \(type))") }
            guard major == 3 else { return .invalid("not a TLS record version") }
            guard length > 0, length <= 16384 + 256 else { return .invalid("bad TLS record length \(length)") }
            guard records.readableBytes >= 5 + Int(length) else { break }
            records.moveReaderIndex(forwardBy: 5)
            var fragment = records.readSlice(length: Int(length))!
            handshake.writeBuffer(&fragment)
            if let result = parseHandshake(handshake) { return result }
        }
        if buffer.readableBytes >= 1, let first: UInt8 = buffer.getInteger(at: buffer.readerIndex), first != 0x16 {
            return .invalid("not a TLS handshake record (type \(first))")
        }
        return .needMoreBytes
    }

    /// Parses a reassembled handshake layer; `nil` if it is not complete yet.
    private static func parseHandshake(_ buffer: ByteBuffer) -> Peek? {
        var b = buffer
        guard b.readableBytes >= 4 else { return nil }
        let type: UInt8 = b.readInteger()!
        guard type == 1 else { return .invalid("first handshake message is not a ClientHello (type \(type))") }
        let high: UInt8 = b.readInteger()!
        let low: UInt16 = b.readInteger()!
        let length = Int(high) << 16 | Int(low)
        guard length <= 65536 else { return .invalid("ClientHello too large") }
        guard b.readableBytes >= length else { return nil }
        var hello = b.readSlice(length: length)!
        return parseClientHello(&hello)
    }

    private static func parseClientHello(_ b: inout ByteBuffer) -> Peek {
        guard b.readableBytes >= 2 + 32, b.moveReaderIndexIfPossible(by: 2 + 32),
              let sessionLength: UInt8 = b.readInteger(), b.moveReaderIndexIfPossible(by: Int(sessionLength)),
              let suitesLength: UInt16 = b.readInteger(), b.moveReaderIndexIfPossible(by: Int(suitesLength)),
              let compressionLength: UInt8 = b.readInteger(), b.moveReaderIndexIfPossible(by: Int(compressionLength)) else {
            return .invalid("truncated ClientHello")
        }
        guard b.readableBytes > 0 else { return .noServerName }
        guard let extensionsLength: UInt16 = b.readInteger(), var extensions = b.readSlice(length: Int(extensionsLength)) else {
            return .invalid("truncated ClientHello extensions")
        }
        while extensions.readableBytes > 0 {
            guard let type: UInt16 = extensions.readInteger(), let length: UInt16 = extensions.readInteger(),
                  var body = extensions.readSlice(length: Int(length)) else {
                return .invalid("truncated ClientHello extension")
            }
            guard type == 0 else { continue }
            guard let listLength: UInt16 = body.readInteger(), var list = body.readSlice(length: Int(listLength)) else {
                return .invalid("bad server_name extension")
            }
            while list.readableBytes > 0 {
                guard let nameType: UInt8 = list.readInteger(), let nameLength: UInt16 = list.readInteger(),
                      let name = list.readSlice(length: Int(nameLength)) else {
                    return .invalid("bad server_name entry")
                }
                if nameType == 0 {
                    let bytes = Array(name.readableBytesView)
                    guard !bytes.isEmpty, bytes.count <= 253,
                          bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                        return .invalid("server name is not a printable ASCII host name")
                    }
                    return .serverName(String(decoding: bytes, as: UTF8.self))
                }
            }
            return .noServerName
        }
        return .noServerName
    }
}

extension ByteBuffer {
    fileprivate mutating func moveReaderIndexIfPossible(by count: Int) -> Bool {
        guard readableBytes >= count else { return false }
        moveReaderIndex(forwardBy: count)
        return true
    }
}
