extension Policy {
    /// Ports the gateway serves for itself (DNS, the explicit proxy, SSH), besides the
    /// transparent 80 and 443: a `host:PORT` rule for one of them is reachable through the
    /// proxy only.
    package static let gatewayOwnPorts: Set<Int> = [22, 53, 3128]

    /// The most ports that get a transparent listener of their own (`listenerPorts`). With
    /// the six standard sockets that is 16 descriptors, what one message of the rootless
    /// builder carries.
    package static let maxListenerPorts = 10

    /// The ports of the allow rules (`host:PORT`, `*.suffix:PORT`) other than 80, 443 and
    /// `gatewayOwnPorts`, ascending: the gateway listens on each, so that clients that
    /// ignore proxy variables reach them by the name DNS answered.
    package var listenerPorts: [Int] {
        Array(Set(allowRules.compactMap(\.port)).subtracting(Rule.defaultPorts).subtracting(Self.gatewayOwnPorts)).sorted()
    }

    /// Refuses a policy whose `listenerPorts` are more than `maxListenerPorts`.
    /// - Throws: `PolicyError` naming the count, the ports and the limit, one line.
    package func checkListenerPorts() throws {
        let ports = listenerPorts
        guard ports.count > Self.maxListenerPorts else { return }
        throw PolicyError(
            file: source, line: 0,
            message: "\(ports.count) ports besides 80 and 443 are allowed (\(ports.map(String.init).joined(separator: ", "))); "
                + "the gateway listens on at most \(Self.maxListenerPorts): allow fewer ports")
    }
}
