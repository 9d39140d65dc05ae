/// Shared by the fuzz targets: a failed invariant stops the run with a message libFuzzer
/// records next to the input that broke it.
func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        fatalError("invariant broken: \(message())", file: file, line: line)
    }
}
