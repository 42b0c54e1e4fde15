// Corpus replay for the fuzz targets' normal (non-libFuzzer) build: runs every file given on
// the command line (or every file in given directories) through the target once. The tests
// run each corpus this way, so a crashing input committed to a corpus fails CI.

import Foundation

/// Runs `body` over each input file named by `arguments` (files or directories); returns the
/// number of inputs run.
public func replayCorpus(_ arguments: [String], _ body: (UnsafeRawBufferPointer) -> Void) -> Int {
    var count = 0
    let fm = FileManager.default
    for arg in arguments {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: arg, isDirectory: &isDir) else {
            FileHandle.standardError.write(Data("no such input: \(arg)\n".utf8))
            exit(2)
        }
        let files =
            isDir.boolValue
            ? ((try? fm.contentsOfDirectory(atPath: arg)) ?? []).sorted().map { "\(arg)/\($0)" } : [arg]
        for f in files {
            guard let data = fm.contents(atPath: f) else { continue }
            data.withUnsafeBytes { body($0) }
            count += 1
        }
    }
    return count
}

#if SHOAL_FUZZ
    @_silgen_name("LLVMFuzzerRunDriver")
    private func llvmFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    // Set once before the driver starts, read by the C callback on the same thread: libFuzzer
    // runs inputs on the thread that called LLVMFuzzerRunDriver.
    nonisolated(unsafe) private var fuzzBody: ((UnsafeRawBufferPointer) -> Void)?

    /// Hands control to libFuzzer (linked by -sanitize=fuzzer), which calls `body` per input.
    public func runFuzzer(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
        fuzzBody = body
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        let rc = llvmFuzzerRunDriver(&argc, &argv) { data, size in
            fuzzBody?(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
        exit(rc)
    }
#endif
