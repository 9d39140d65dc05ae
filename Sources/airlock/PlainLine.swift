import ArgumentParser

/// A command's line in its plain form, read without swift-argument-parser's reflection.
///
/// swift-argument-parser learns a command's options by reflecting over its properties, and
/// each first question it asks of a type (`as? ArgumentSetProvider`, `CustomReflectable`,
/// the generic requirements of `Option<Int>`) walks the runtime's table of 6,000 protocol
/// conformances. For `run` that was 2 ms, a sixth of a whole `run -- true`
/// (docs/benchmarks.md). A plain line (every word before `--` a declared `--name`,
/// `--name=value` or `--name value`; the command after `--`) is read here instead, from a
/// table each options type keeps beside its declarations; swift-argument-parser stays the
/// definition: its values, its `validate()`, its conversions (`ExpressibleByArgument`).
///
/// Anything else is not read, and the whole tree's parse answers it with its own message:
/// a word not in the table (`--help`, `-h`, `--version`, a typo), an empty value, a separate
/// value that begins with `-` (the parser's own rule for what is an option is subtler), an
/// option given twice that does not repeat, a flag given a value, a value its type refuses,
/// a line without `--`, a `validate()` that throws. What is read means exactly what the
/// parser makes of it: `CommandParseTests` compares every option, in every form, with the
/// parser's result, and the table with the parser's own list of the command's options.
struct PlainOption<Root> {
    let spelling: PlainSpelling
    /// Sets the option from the values the line gave it (none: its default), through the
    /// property's setter: a parsable property not yet set cannot be read, so nothing here
    /// reads one. False when the option's type refuses a value.
    let assign: (inout Root, [String]) -> Bool

    private init(name: String, takesValue: Bool, repeats: Bool, assign: @escaping (inout Root, [String]) -> Bool) {
        spelling = PlainSpelling(name: name, takesValue: takesValue, repeats: repeats)
        self.assign = assign
    }

    static func flag(_ name: String, _ set: @escaping (inout Root, Bool) -> Void) -> Self {
        Self(name: name, takesValue: false, repeats: false) { root, given in
            set(&root, !given.isEmpty)
            return true
        }
    }

    static func value<Value: ExpressibleByArgument>(_ name: String, _ set: @escaping (inout Root, Value?) -> Void) -> Self {
        single(name, initial: nil, parse: { Value(argument: $0).map(Optional.some) }, set)
    }

    static func value<Value: ExpressibleByArgument>(_ name: String, default initial: Value, _ set: @escaping (inout Root, Value) -> Void) -> Self {
        single(name, initial: initial, parse: Value.init(argument:), set)
    }

    /// An option given at most once: its last value, else `initial`.
    private static func single<Stored>(
        _ name: String, initial: Stored, parse: @escaping (String) -> Stored?, _ set: @escaping (inout Root, Stored) -> Void
    ) -> Self {
        Self(name: name, takesValue: true, repeats: false) { root, given in
            guard let text = given.last else {
                set(&root, initial)
                return true
            }
            guard let value = parse(text) else { return false }
            set(&root, value)
            return true
        }
    }

    static func values<Value: ExpressibleByArgument>(_ name: String, _ set: @escaping (inout Root, [Value]) -> Void) -> Self {
        Self(name: name, takesValue: true, repeats: true) { root, given in
            var values: [Value] = []
            for text in given {
                guard let value = Value(argument: text) else { return false }
                values.append(value)
            }
            set(&root, values)
            return true
        }
    }
}

/// How a line names an option.
struct PlainSpelling {
    /// The long name, without its dashes.
    let name: String
    let takesValue: Bool
    let repeats: Bool
}

/// An options group (`@OptionGroup`) whose options a plain line reads.
protocol PlainOptions: ParsableArguments {
    /// Every option of the group, as declared.
    static var plainOptions: [PlainOption<Self>] { get }
}

/// An options group held by a command: made from the values its options were given and
/// validated, as swift-argument-parser validates each group it decodes, then set whole.
struct PlainGroup<Command> {
    /// How a line names the group's options.
    let spellings: [PlainSpelling]
    /// Sets the group from the values the line gave its options, in `spellings` order.
    let assign: (inout Command, ArraySlice<[String]>) throws -> Bool

    init<Group: PlainOptions>(_: Group.Type, _ set: @escaping (inout Command, Group) -> Void) {
        let declared = Group.plainOptions
        spellings = declared.map(\.spelling)
        assign = { command, given in
            var group = Group()
            for (option, values) in zip(declared, given) {
                guard option.assign(&group, values) else { return false }
            }
            try group.validate()
            set(&command, group)
            return true
        }
    }
}

/// A command whose plain lines are read by `PlainLine`.
protocol PlainCommand: ParsableCommand {
    /// The command's own options (its groups' are in `plainGroups`).
    static var plainOptions: [PlainOption<Self>] { get }
    static var plainGroups: [PlainGroup<Self>] { get }
    /// Sets the arguments after `--`.
    static var plainTerminated: (inout Self, [String]) -> Void { get }
}

enum PlainLine {
    /// Every option a plain line of `Command` may name: its own, then its groups', in order.
    static func options<Command: PlainCommand>(of _: Command.Type) -> [PlainSpelling] {
        Command.plainOptions.map(\.spelling) + Command.plainGroups.flatMap(\.spellings)
    }

    /// `arguments` (the words after the command's name) read as swift-argument-parser would
    /// read them, or nil when they are not a plain line or the command refuses them.
    static func read<Command: PlainCommand>(_ arguments: ArraySlice<String>, as _: Command.Type = Command.self) -> Command? {
        let options = options(of: Command.self)
        var given = [[String]](repeating: [], count: options.count)
        var terminated: ArraySlice<String>?
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let word = arguments[index]
            index += 1
            if word == "--" {
                terminated = arguments[index...]
                break
            }
            guard word.utf8.count > 2, word.hasPrefix("--") else { return nil }
            let body = word.dropFirst(2)
            let equals = body.firstIndex(of: "=")
            let name = equals.map { body[..<$0] } ?? body
            guard let position = options.firstIndex(where: { $0.name == name }) else { return nil }
            let option = options[position]
            guard option.repeats || given[position].isEmpty else { return nil }
            if option.takesValue {
                if let equals {
                    let value = body[body.index(after: equals)...]
                    guard !value.isEmpty else { return nil }
                    given[position].append(String(value))
                } else {
                    guard index < arguments.endIndex, let first = arguments[index].utf8.first, first != UInt8(ascii: "-") else {
                        return nil
                    }
                    given[position].append(arguments[index])
                    index += 1
                }
            } else {
                guard equals == nil else { return nil }
                given[position].append("")
            }
        }
        guard let terminated else { return nil }
        var command = Command()
        var position = 0
        do {
            for option in Command.plainOptions {
                guard option.assign(&command, given[position]) else { return nil }
                position += 1
            }
            for group in Command.plainGroups {
                guard try group.assign(&command, given[position ..< position + group.spellings.count]) else { return nil }
                position += group.spellings.count
            }
            Command.plainTerminated(&command, Array(terminated))
            try command.validate()
        } catch {
            return nil
        }
        return command
    }
}
