import XCTest
@testable import RunfeedCore

final class ProcessStatsTests: XCTestCase {
    // A line as Linux 6.x writes it for a process named "run feed) (x" (a command name may hold spaces and
    // parentheses): utime 250, stime 50, starttime 123456, vsize 1048576000, rss 2560 pages.
    let line = "4242 (run feed) (x) S 1 4242 4242 0 -1 4194560 2950 0 0 0 250 50 0 0 20 0 9 0 123456 1048576000 2560 "
        + "18446744073709551615 94000000000000 94000000100000 140000000000000 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

    func testParsesTheFieldsAfterTheCommandName() {
        let s = ProcSelfStat.parse(line)
        XCTAssertEqual(s, ProcSelfStat(userTicks: 250, systemTicks: 50, startTicks: 123456, virtualBytes: 1_048_576_000,
                                       residentPages: 2560))
    }

    func testRejectsTruncatedOrGarbledLines() {
        XCTAssertNil(ProcSelfStat.parse(""))
        XCTAssertNil(ProcSelfStat.parse("4242 runfeed S 1 2 3"))
        XCTAssertNil(ProcSelfStat.parse("4242 (runfeed) S 1 4242 4242 0 -1 4194560 2950 0 0 0 250 50"))
        XCTAssertNil(ProcSelfStat.parse(line.replacingOccurrences(of: " 250 50 ", with: " x 50 ")))
    }

    func testReadsBootTime() {
        let stat = "cpu  10 0 20 30 0 0 0 0 0 0\ncpu0 10 0 20 30 0 0 0 0 0 0\nintr 1 2\nctxt 99\nbtime 1760000000\nprocesses 7\n"
        XCTAssertEqual(ProcStat.bootTimeSeconds(stat), 1_760_000_000)
        XCTAssertNil(ProcStat.bootTimeSeconds("cpu 1 2 3\n"))
        XCTAssertNil(ProcStat.bootTimeSeconds("btime soon\n"))
    }

    func testSampleIsInSecondsAndBytes() {
        let stat = ProcSelfStat.parse(line)!
        let s = ProcessSample(stat: stat, bootTimeSeconds: 1_760_000_000, ticksPerSecond: 100, pageSize: 4096,
                              openFds: 48, maxFds: 65536)
        XCTAssertEqual(s.cpuSeconds, 3.0)
        XCTAssertEqual(s.residentBytes, 10_485_760)
        XCTAssertEqual(s.virtualBytes, 1_048_576_000)
        XCTAssertEqual(s.startTimeSeconds, 1_760_001_234.56, accuracy: 1e-6)
        XCTAssertEqual(s.openFds, 48)
        XCTAssertEqual(s.maxFds, 65536)
    }
}
