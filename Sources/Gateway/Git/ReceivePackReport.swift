import GatewayCore
/// The answer to a refused push, as `git-receive-pack` itself would give it: `unpack ok`,
/// then `ng <ref> <reason>` for every ref of the push (none is forwarded when one is
/// refused), so git prints ` ! [remote rejected] main -> main (reason)`. With
/// `side-band-64k` the report travels in band 1 and each refusal is also said in band 2,
/// which git shows as `remote: airlock: …`.
package enum ReceivePackReport {
    /// The media type of a receive-pack result.
    package static let contentType = "application/x-git-receive-pack-result"

    package static func refused(_ updates: [RefUpdate], refusals: [PushPolicy.Refusal], capabilities: [String]) -> [UInt8] {
        var report = PktLine.encode(Array("unpack ok\n".utf8))
        for update in updates {
            let reason = refusals.first { $0.ref == update.ref }?.reason ?? "refused with the rest of this push by airlock"
            report += PktLine.encode(Array("ng \(update.ref) \(reason)\n".utf8))
        }
        report += PktLine.flushBytes
        guard capabilities.contains("side-band-64k") || capabilities.contains("side-band") else { return report }
        let chunk = capabilities.contains("side-band-64k") ? PktLine.maximumLength - 5 : 995
        var out: [UInt8] = []
        for refusal in refusals {
            out += PktLine.encode([2] + Array("airlock: \(refusal.ref): \(refusal.reason)\n".utf8))
        }
        var offset = 0
        while offset < report.count {
            let end = min(report.count, offset + chunk)
            out += PktLine.encode([1] + report[offset..<end])
            offset = end
        }
        return out + PktLine.flushBytes
    }
}
