"""The core on a board: the link's protocol, the bridge, the host driver, the simulated board and `accel board`/`run`.

The simulated board (bridge + core under Verilator) is driven by the host driver through a simulated serial
line on 20 digits images and must agree with the simulator bit for bit and cycle for cycle; its transcript is
then replayed with planted faults (a flipped bit in a returned word, words sent in the wrong byte order, a
wrong cycle count), each of which must make the same comparison fail.
"""
import json
import os
import threading
from pathlib import Path

import pytest

from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.accel.flows.simulation import digits_test_images, simulate_images
from spikecore.accel.flows.verify import verify
from spikecore.errors import UserError
from spikecore.rtl import link
from spikecore.rtl.board import BOARDS, PlatformTop, board_verilog, ecp5_pll, get_board, ice40_pll
from spikecore.rtl.board_sim import run_board
from spikecore.rtl.bridge import CommandDecoder, HostBridge, UARTReceiver, UARTTransmitter
from spikecore.rtl.driver import BoardDriver, LinkError, NoAnswer, readout_words
from spikecore.rtl.hostmap import HOST_MAP

from bad_input import assert_one_error_line, assert_table_lists

SAMPLES = 20
DEFAULT_ARCH = Path(__file__).parents[1] / "accel" / "data" / "default_arch.yaml"
#: The real line: 115200 baud, 10 bits per byte.
REAL_BAUD = link.DEFAULT_BAUD


# ---- the protocol and the blocks' argument checks --------------------------------------------------------
def test_protocol_numbers_come_from_the_host_map(arch):
    assert link.address_bytes(arch) == -(-HOST_MAP.addr_bits(arch) // 8) == 2
    assert link.word_bytes(arch, HOST_MAP.control_select) == 4  # the 32-bit counters
    assert link.word_bytes(arch, HOST_MAP.select("inputs")) == 1  # 5-bit pixels
    assert link.word_bytes(arch, HOST_MAP.select("params")) == 10  # 80-bit words
    with pytest.raises(ValueError, match=r"select 12 is not in the host map"):
        link.word_bytes(arch, 12)
    assert link.request(link.WRITE, 4, 0x1234, 3, arch) == bytes([ord("W"), 4, 0x34, 0x12, 3, 0])
    assert link.encode_words([0x010203], 3) == bytes([3, 2, 1])
    assert link.decode_words(bytes([3, 2, 1, 9, 0, 0]), 3) == [0x010203, 9]
    with pytest.raises(ValueError, match=r"a transfer moves 1 to 65535 words, got 0"):
        link.request(link.READ, 4, 0, 0, arch)
    assert link.hello_answer(arch) == b"SPK" + bytes([1, 2]) + bytes.fromhex(arch.fingerprint()[:8])


def test_baud_divider():
    assert link.clocks_per_bit(24e6, 115200) == 208
    with pytest.raises(ValueError, match=r"115200 baud from a 0.4 MHz clock is 3.47 cycles per bit; the bridge needs "
                                         r"at least 4"):
        link.clocks_per_bit(0.4e6, 115200)
    with pytest.raises(ValueError, match=r"250000 baud from a 1.1 MHz clock: 4 cycles per bit give 275000 baud, "
                                         r"10.0% off"):
        link.clocks_per_bit(1.1e6, 250000)
    with pytest.raises(ValueError, match="baud must be a positive integer, got 0"):
        link.clocks_per_bit(24e6, 0)


def test_blocks_check_their_arguments(arch):
    for block in (UARTReceiver, UARTTransmitter):
        with pytest.raises(TypeError, match=r"clocks_per_bit must be an integer of at least 4, got 3"):
            block(3)
    with pytest.raises(TypeError, match=r"arch must be an accel.config.ArchConfig, got dict"):
        CommandDecoder({})
    with pytest.raises(TypeError, match=r"clocks_per_bit must be an integer of at least 4, got True"):
        HostBridge(arch, True)
    with pytest.raises(TypeError, match=r"board must be a spikecore.rtl.board.Board, got str"):
        PlatformTop(arch, "icebreaker", None, 8)


def test_board_top_elaborates_around_the_generated_core(arch):
    text = board_verilog(arch, 8)
    assert "module spikecore_board(" in text
    assert "  core core (" in text  # the generated module, instantiated by name
    for port in ("rx", "tx", "busy", "done"):
        assert f"  input {port};" in text or f"  output {port};" in text


def test_plls_make_the_configured_clock():
    assert ice40_pll(12, 24).parameters == {"DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}
    assert ice40_pll(12, 24).output_mhz == 24
    pll = ecp5_pll(25, 30)
    assert pll.output_mhz == 30 and 400 <= 30 * pll.parameters["CLKOP_DIV"] <= 800
    assert 25 / pll.parameters["CLKI_DIV"] * pll.parameters["CLKFB_DIV"] == 30
    with pytest.raises(UserError, match=r"board ulx3s-85f: its PLL cannot make clock_mhz = 24 from the 25 MHz "
                                        r"oscillator \(nearest 25 MHz\)"):
        BOARDS["ulx3s-85f"].pll(24)


def test_platform_top_has_the_boards_pins(arch):
    board = get_board("icebreaker")
    platform = board.platform()
    plan = platform.build(PlatformTop(arch, board, board.pll(arch.clock_mhz), 208), name="top", do_build=False)
    pcf = plan.files["top.pcf"]
    for pin in ("uart_0__rx__io 6", "uart_0__tx__io 9", "led_r_0__io 11", "led_g_0__io 37", "clk12_0__io 35"):
        assert f"set_io {pin}" in pcf, pcf
    assert "set_frequency clk12_0__io 12.0" in pcf  # nextpnr derives the PLL's clock from it
    assert "SB_PLL40_PAD" in plan.files["top.il"]


# ---- the simulated board ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def board_cache(tmp_path_factory):
    """One build of the simulated board for the module's tests."""
    return tmp_path_factory.mktemp("board")


@pytest.fixture(scope="module")
def board_run(digits_program, arch, board_cache):
    pixels, _ = digits_test_images(SAMPLES)
    inputs = pixels.reshape(SAMPLES, -1).tolist()
    outcome = run_board(digits_program.memory_image(arch), inputs, arch, board_cache,
                        readout_words(digits_program, arch))
    return pixels, outcome, simulate_images(digits_program, arch, pixels, False)


def throughput(outcome, arch, baud: int) -> float:
    """Images per second at ``baud`` from the bytes each inference moved on the line and its core cycles."""
    seconds = sum(r["bytes_sent"] + r["bytes_received"] for r in outcome["results"]) * link.LINE_BITS_PER_BYTE / baud \
        + sum(r["cycles"] for r in outcome["results"]) / (arch.clock_mhz * 1e6)
    return len(outcome["results"]) / seconds


def test_simulated_board_is_bit_and_cycle_exact(board_run, digits_program, arch):
    pixels, outcome, sim_results = board_run
    report, _ = verify(digits_program, arch, pixels, outcome["results"], sim_results)
    assert report["samples"] == SAMPLES
    assert report["mismatch_count"] == {"sim": 0, "rtl": 0}, report["mismatches"]
    assert report["bit_exact"] and report["cycle_exact"]
    # the cycles register and the bridge's own busy count agree with the simulator's account
    assert [r["cycles"] for r in outcome["results"]] == [r["cycles_measured"] for r in outcome["results"]] \
        == [int(r.cycles) for r in sim_results]
    assert all(r["trace_count"] > 500 for r in outcome["results"])
    simulated = SAMPLES / (sum(r["sim_time_ns"] for r in outcome["results"]) * 1e-9)
    print(f"\nsimulated line {outcome['baud']} baud: {simulated:.0f} images/s including transfers; "
          f"at {REAL_BAUD} baud: {throughput(outcome, arch, REAL_BAUD):.2f} images/s (program "
          f"{outcome['program_bytes']} bytes, {outcome['program_bytes'] * 10 / REAL_BAUD:.1f} s); build "
          f"{outcome['build_seconds']:.0f} s, run {outcome['run_seconds']:.0f} s")
    assert 1 < throughput(outcome, arch, REAL_BAUD) < simulated


class Replay:
    """A transport that plays a recorded transcript back to the driver: every write must be the recorded one,
    every read gets the recorded answer, after ``fault(write, answer) -> answer`` (a planted error)."""

    def __init__(self, transcript, fault=None):
        self.chunks = list(transcript)
        self.fault = fault or (lambda request, answer: answer)
        self.last_write = b""

    def write(self, data):
        kind, recorded = self.chunks.pop(0)
        assert kind == "w" and bytes(data) == bytes.fromhex(recorded), "the driver departed from the transcript"
        self.last_write = bytes(data)

    def read(self, count):
        kind, recorded = self.chunks.pop(0)
        assert kind == "r" and len(recorded) == 2 * count
        return self.fault(self.last_write, bytes.fromhex(recorded))


def replay(outcome, digits_program, arch, pixels, fault=None) -> list:
    """The driver's results for ``pixels`` from the simulated board's transcript, with a planted ``fault``."""
    driver = BoardDriver(Replay(outcome["transcript"], fault), arch, sleep=lambda seconds: None)
    driver.hello()
    driver.load_program(digits_program.memory_image(arch))
    words = readout_words(digits_program, arch)
    return [driver.run(row, words) for row in pixels.reshape(len(pixels), -1).tolist()]


def first_read_of(select: int, address: int = None):
    """A fault touching only the first answer to a READ of ``select`` (at ``address``, if given)."""
    done = []

    def applies(request: bytes) -> bool:
        hit = (not done and request[0] == link.READ and request[1] == select
               and (address is None or int.from_bytes(request[2:4], "little") == address))
        if hit:
            done.append(request)
        return hit
    return applies


def test_replayed_transcript_is_exact(board_run, digits_program, arch):
    pixels, outcome, sim_results = board_run
    results = replay(outcome, digits_program, arch, pixels)
    assert results == [{key: r[key] for key in results[0]} for r in outcome["results"]]
    report, _ = verify(digits_program, arch, pixels, results, sim_results)
    assert report["bit_exact"] and report["cycle_exact"]


def test_flipped_bit_in_a_returned_trace_word_fails(board_run, digits_program, arch):
    pixels, outcome, sim_results = board_run
    trace = first_read_of(HOST_MAP.select("trace"))

    def flip(request, answer):
        return bytes([answer[0] ^ 1]) + answer[1:] if trace(request) else answer
    report, _ = verify(digits_program, arch, pixels, replay(outcome, digits_program, arch, pixels, flip), sim_results)
    assert not report["bit_exact"]
    assert report["mismatch_count"]["rtl"] >= 1 and report["mismatches"][0]["sample"] == 0


def test_words_in_the_wrong_byte_order_fail(board_run, digits_program, arch):
    pixels, outcome, sim_results = board_run
    size = link.word_bytes(arch, HOST_MAP.select("trace"))
    trace = first_read_of(HOST_MAP.select("trace"))

    def big_endian(request, answer):
        if not trace(request):
            return answer
        return b"".join(answer[k:k + size][::-1] for k in range(0, len(answer), size))
    report, _ = verify(digits_program, arch, pixels, replay(outcome, digits_program, arch, pixels, big_endian),
                       sim_results)
    assert not report["bit_exact"]


def test_wrong_cycle_count_fails_cycle_exact(board_run, digits_program, arch):
    pixels, outcome, sim_results = board_run
    cycles = first_read_of(HOST_MAP.control_select, HOST_MAP.address("cycles"))

    def flip(request, answer):
        return bytes([answer[0] ^ 2]) + answer[1:] if cycles(request) else answer
    report, _ = verify(digits_program, arch, pixels, replay(outcome, digits_program, arch, pixels, flip), sim_results)
    assert report["bit_exact"] and not report["cycle_exact"]


def serve_transcript(fd: int, transcript, failures: list) -> None:
    """The board's end of a pseudo-terminal: check each request against the transcript, send its answers."""
    for kind, recorded in transcript:
        data = bytes.fromhex(recorded)
        if kind == "r":
            os.write(fd, data)
            continue
        got = b""
        while len(got) < len(data):
            got += os.read(fd, len(data) - len(got))
        if got != data:
            failures.append((got.hex(), recorded))
            return


def test_accel_run_through_a_serial_port(board_run, digits_program, tmp_path):
    """accel run over a real serial port (a pseudo-terminal) whose other end plays the simulated board's bytes."""
    pixels, outcome, _ = board_run
    program = tmp_path / "prog"
    digits_program.save(program)
    controller, device = os.openpty()
    failures = []
    server = threading.Thread(target=serve_transcript, args=(controller, outcome["transcript"], failures),
                              daemon=True)
    server.start()
    try:
        code = main(["run", "--port", os.ttyname(device), str(program), "--samples", str(SAMPLES), "--out",
                     str(tmp_path / "board.json"), "--quiet"])
    finally:
        os.close(device)
        server.join(timeout=5)
        os.close(controller)
    assert failures == [] and code == 0
    report = json.loads((tmp_path / "board.json").read_text())
    assert report["format"] == "spikecore-verify-report" and report["bit_exact"] and report["cycle_exact"]
    assert report["samples"] == SAMPLES and report["simulator"].startswith("board on /dev/")
    # the same bytes as on the simulated line (which counted the one byte of HELLO with the program's)
    assert report["board_link"]["program_bytes"] == outcome["program_bytes"] - 1
    assert report["board_link"]["images_per_second"] > 0


def test_line_format_agrees_with_cocotbext_uart(arch, board_cache):
    """cocotbext-uart, a UART that owes nothing to the bridge's, exchanges the same bytes as the simulation top's
    line: HELLO, register and memory writes, START, STATUS and reads (an empty program: only the setup runs)."""
    image = {"registers": {"n_layers": 0, "timesteps": 1, "n_inputs": 5, "state_rows": 1}}
    outcomes = {line: run_board(image, [[3, 0, 7, 1, 31]], arch, board_cache, range(0, 1), line=line)
                for line in ("model", "cocotbext-uart")}
    model, uart = outcomes["model"], outcomes["cocotbext-uart"]
    assert model["transcript"] == uart["transcript"]
    assert model["transcript"][1] == ["r", link.hello_answer(arch).hex()]
    result = uart["results"][0]
    assert result["cycles"] == result["cycles_measured"] > 5  # CLEAR and SCAN at least


def test_driver_reports_silence_and_foreign_devices(arch):
    class Silent:
        def write(self, data):
            pass

        def read(self, count):
            return b""

    class Foreign(Silent):
        def read(self, count):
            return b"\x00" * count

    with pytest.raises(NoAnswer, match=r"the board did not answer HELLO \(0 of 9 bytes came\)"):
        BoardDriver(Silent(), arch).hello()
    with pytest.raises(LinkError, match=r"the device answered HELLO with 0{18}: not a spikecore board"):
        BoardDriver(Foreign(), arch).hello()
    with pytest.raises(TypeError, match=r"transport must have write\(\) and read\(\), got int"):
        BoardDriver(3, arch)


# ---- the command line ------------------------------------------------------------------------------------
def accel(capsys, *args):
    """``accel ARGS`` in this process: ``(exit status, stderr)``."""
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


def test_board_bad_inputs(tmp_path, capsys):
    assert_table_lists(["board-unknown-board", "board-does-not-fit", "board-clock-unreachable",
                        "run-missing-port", "run-silent-port"])
    out = tmp_path / "out"
    code, err = accel(capsys, "board", "--board", "icebraker", "--out", out)
    assert code == 2
    assert_one_error_line(err, "board", ["--board 'icebraker' is not a supported board (did you mean 'icebreaker'? "
                                         "supported: icebreaker, ulx3s-85f)"])
    big = tmp_path / "big.yaml"
    big.write_text(DEFAULT_ARCH.read_text().replace("synapses: 16384", "synapses: 262144"))
    code, err = accel(capsys, "board", "--board", "icebreaker", "--arch", big, "--out", out)
    assert code == 2
    assert_one_error_line(err, "board", ["configuration digits-default does not fit the iCEBreaker (iCE40 UP5K): its "
                                         "memories hold"])
    code, err = accel(capsys, "board", "--board", "ulx3s-85f", "--out", out)
    assert code == 2
    assert_one_error_line(err, "board", ["board ulx3s-85f: its PLL cannot make clock_mhz = 24"])
    assert not out.exists()  # nothing half-written


def test_run_bad_ports(tmp_path, digits_program, capsys):
    program = tmp_path / "prog"
    digits_program.save(program)
    report = tmp_path / "r.json"
    code, err = accel(capsys, "run", "--port", tmp_path / "ttyNONE", program, "--samples", 1, "--out", report,
                      "--quiet")
    assert code == 2
    assert_one_error_line(err, "run", [f"--port {tmp_path / 'ttyNONE'}: cannot open the serial port"])
    controller, device = os.openpty()  # a port that exists and that nobody answers on
    try:
        code, err = accel(capsys, "run", "--port", os.ttyname(device), program, "--samples", 1, "--timeout", 0.5,
                          "--out", report, "--quiet")
    finally:
        os.close(controller)
        os.close(device)
    assert code == 2
    assert_one_error_line(err, "run", ["the board did not answer HELLO (0 of 9 bytes came) within 0.5 s"])
    assert not report.exists()


@pytest.mark.slow
def test_simulated_board_under_icarus(digits_program, arch, tmp_path):
    pixels, _ = digits_test_images(2)
    outcome = run_board(digits_program.memory_image(arch), pixels.reshape(2, -1).tolist(), arch, tmp_path,
                        readout_words(digits_program, arch), simulator="icarus")
    report, _ = verify(digits_program, arch, pixels, outcome["results"],
                       simulate_images(digits_program, arch, pixels, False))
    assert report["bit_exact"] and report["cycle_exact"]


@pytest.mark.slow
def test_icebreaker_bitstream_meets_the_clock(tmp_path, digits_program, capsys):
    program = tmp_path / "prog"
    digits_program.save(program)
    code, err = accel(capsys, "board", "--board", "icebreaker", "--program", program, "--out", tmp_path / "board",
                      "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "board" / "board_report.json").read_text())
    assert report["meets_clock"] and report["fmax_mhz"] >= 24
    assert report["lut"] <= 5280 and report["spram"] == 4
    bitstream = (tmp_path / "board" / "board.bin").read_bytes()
    # icepack's file: a comment block (0xff 0x00 ... 0x00 0xff), then the sync word 7e aa 99 7e
    assert len(bitstream) == report["bitstream_bytes"] > 100_000 and b"\x7e\xaa\x99\x7e" in bitstream[:64]
    assert (tmp_path / "board" / "program_image.bin").stat().st_size == report["program_image"]["bytes"]


@pytest.mark.slow
def test_ulx3s_bitstream_meets_the_clock(tmp_path, capsys):
    """The ECP5 board target on its example configuration (nextpnr-ecp5 takes about 7 minutes here)."""
    example = Path(__file__).resolve().parents[1] / "examples" / "arch_ulx3s.yaml"
    program = tmp_path / "prog"
    code, err = accel(capsys, "compile", shipped_checkpoint_path(), "--arch", example, "--out", program)
    assert code == 0, err
    code, err = accel(capsys, "board", "--board", "ulx3s-85f", "--arch", example, "--program", program,
                      "--out", tmp_path / "board", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "board" / "board_report.json").read_text())
    assert report["meets_clock"] and report["fmax_mhz"] >= 30
    assert report["lut"] <= report["capacity"]["lut"] and report["bram"] <= report["capacity"]["bram"]
    bitstream = (tmp_path / "board" / report["bitstream"]).read_bytes()
    # ecppack's file: a comment block (0xff 0x00 ... 0x00 0xff), then the preamble ff ff bd b3
    assert len(bitstream) == report["bitstream_bytes"] > 100_000 and b"\xff\xff\xbd\xb3" in bitstream[:512]
