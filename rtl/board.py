"""The core on a board: the host bridge and the core (:class:`BoardTop`), its simulation top, and the tops of
the supported boards with their clocks (:data:`BOARDS`, :class:`PlatformTop`).

The core inside is the module ``core`` that :func:`spikecore.rtl.verilog.generate` writes, the very file
``accel verify`` simulates and ``accel synth`` synthesises, instantiated by name: :class:`BoardTop` adds the
bridge (:class:`spikecore.rtl.bridge.HostBridge`) around it and brings out the serial line and the ``busy`` and
``done`` LEDs. :func:`write_simulation_sources` writes ``core.v`` and ``board.v`` (the board top and, for
simulators only, ``spikecore_board_sim``: a free-running clock and the host's end of the serial line as
registers, as the core's own simulation top does) for :mod:`spikecore.rtl.board_sim`.

A board's top (:class:`PlatformTop`) takes the clock from the board's oscillator through the device's PLL
(iCE40 ``SB_PLL40_PAD``, ECP5 ``EHXPLLL``) to the configuration's ``clock_mhz``, holds the design in reset
until the PLL locks, and uses the pins of the ``amaranth-boards`` platform definition: the USB serial
port's ``uart`` and two LEDs.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from spikecore.accel.contract.config import ArchConfig
from spikecore.errors import UserError

from .bridge import HostBridge, check_arch, check_clocks_per_bit
from .core import core_signature
from .verilog import SIM_CLOCK_PERIOD_NS, TOP_MODULE, generate, trigger_combinational_blocks

#: The module of :class:`BoardTop` in ``board.v``, and the simulation top around it.
BOARD_MODULE = "spikecore_board"
SIM_TOP = "spikecore_board_sim"
#: The simulation top's ports that the testbench reaches (the serial line's host end and the reset are
#: registers of the simulation top, like the core's inputs in ``spikecore.rtl.verilog``).
SIM_TOP_PORTS = ("clk", "tx", "busy", "done", "send_idle", "receive_reached", "rx", "rst", "send_total",
                 "receive_want", "received")
#: How far the PLL's clock may be from ``clock_mhz``.
PLL_TOLERANCE = 0.005


class BoardTop(wiring.Component):
    """The host bridge and the core ``core`` (an instance of the generated module of that name).

    Parameters
    ----------
    arch : accel.config.ArchConfig
        The core's configuration (its host port's widths).
    clocks_per_bit : int
        Clock cycles per bit of the serial line (:func:`spikecore.rtl.link.clocks_per_bit`).

    Attributes
    ----------
    rx : Signal(1), in
        The serial line from the host (idle high).
    tx : Signal(1), out
        The serial line to the host (idle high).
    busy : Signal(1), out
        The core is running (an LED).
    done : Signal(1), out
        The core has finished a run (an LED).
    """

    def __new__(cls, arch, clocks_per_bit, *args, **kwargs):
        # checked before Amaranth registers the object: a rejected top never warns that it was never used
        check_arch(arch)
        check_clocks_per_bit(clocks_per_bit)
        return super().__new__(cls, arch, clocks_per_bit, *args, src_loc_at=1, **kwargs)

    def __init__(self, arch: ArchConfig, clocks_per_bit: int):
        self.arch = arch
        self.clocks_per_bit = clocks_per_bit
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = HostBridge(self.arch, self.clocks_per_bit)
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for name, member in core_signature(self.arch).members.items():
            ports[("i_" if member.flow == In else "o_") + name] = getattr(bridge.host, name)
        m.submodules.core = Instance(TOP_MODULE, **ports)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.busy.eq(bridge.host.busy),
                     self.done.eq(bridge.host.done)]
        return m


#: ``+spikecore_line_send=FILE``: the bytes the host sends (the testbench appends them);
#: ``+spikecore_line_receive=FILE``: a line of two hex digits per byte the host received (``!!`` for a byte whose
#: stop bit was low).
LINE_SEND_PLUSARG = "spikecore_line_send"
LINE_RECEIVE_PLUSARG = "spikecore_line_receive"


def simulation_top(clocks_per_bit: int) -> str:
    """Verilog of :data:`SIM_TOP`: :data:`BOARD_MODULE` with its own clock and the host's end of the serial line
    (simulation only).

    The line's host end is a UART of ``clocks_per_bit`` cycles per bit, clocked on the falling edge (the board
    samples on the rising one). Its sender takes the bytes from the file of :data:`LINE_SEND_PLUSARG` while
    ``sent`` is below the register ``send_total`` (the testbench appends bytes to the file, then raises the
    total); ``send_idle`` is high when every byte, its stop bit included, is on the line. Its receiver writes each
    byte to the file of :data:`LINE_RECEIVE_PLUSARG` and counts it in ``received``; ``receive_reached`` is high
    while ``received >= receive_want``. The testbench thus waits once per transfer, not once per bit. Without
    the send file the sender stays idle and ``rx`` is the testbench's to drive (cocotbext-uart's source).
    """
    check_clocks_per_bit(clocks_per_bit)
    half = SIM_CLOCK_PERIOD_NS // 2
    public = "/*verilator public_flat_rw*/"
    return "\n".join([
        "`ifndef SYNTHESIS",
        "// Simulation only: the board top with its own clock and the host's end of the serial line (rtl/board.py).",
        f"module {SIM_TOP}(clk, tx, busy, done, send_idle, receive_reached);",
        f"  output reg clk {public};",
        f"  output tx {public};",
        f"  output busy {public};",
        f"  output done {public};",
        f"  output send_idle {public};",
        f"  output receive_reached {public};",
        f"  reg rx {public} = 1'b1;",
        f"  reg rst {public} = 1'b1;",
        f"  reg [31:0] send_total {public} = 0;",
        f"  reg [31:0] receive_want {public} = 0;",
        f"  reg [31:0] received {public} = 0;",
        "  initial clk = 1'b0;",
        f"  always #{half} clk = ~clk;",
        f"  {BOARD_MODULE} board (.clk(clk), .rst(rst), .rx(rx), .tx(tx), .busy(busy), .done(done));",
        "  integer send_file = 0, receive_file = 0, byte_read;",
        "  initial begin : open_line",
        "    reg [8 * 4096 - 1:0] path;",
        f'    if ($value$plusargs("{LINE_SEND_PLUSARG}=%s", path)) send_file = $fopen(path, "r");',
        f'    if ($value$plusargs("{LINE_RECEIVE_PLUSARG}=%s", path)) receive_file = $fopen(path, "w");',
        "  end",
        "  // the sender: start bit, 8 data bits (least significant first), stop bit",
        "  reg [31:0] sent = 0;",
        "  reg [8:0] frame = 9'h1ff;",
        "  reg [3:0] frame_bits = 0;",
        "  reg [31:0] send_timer = 0;",
        "  assign send_idle = sent == send_total && frame_bits == 0 && send_timer == 0;",
        "  always @(negedge clk) begin",
        "    if (send_timer != 0) send_timer <= send_timer - 1;",
        "    else if (frame_bits != 0) begin",
        "      rx <= frame[0];",
        "      frame <= {1'b1, frame[8:1]};",
        "      frame_bits <= frame_bits - 1;",
        f"      send_timer <= {clocks_per_bit - 1};",
        "    end else if (send_file != 0 && sent != send_total) begin",
        "      byte_read = $fgetc(send_file);",
        "      rx <= 1'b0;",
        "      frame <= {1'b1, byte_read[7:0]};",
        "      frame_bits <= 9;",
        f"      send_timer <= {clocks_per_bit - 1};",
        "      sent <= sent + 1;",
        "    end",
        "  end",
        "  // the receiver: each bit sampled in its middle",
        "  reg receiving = 0;",
        "  reg [3:0] receive_bits = 0;",
        "  reg [7:0] receive_shift = 0;",
        "  reg [31:0] receive_timer = 0;",
        "  assign receive_reached = received >= receive_want;",
        "  always @(negedge clk) begin",
        "    if (!receiving) begin",
        "      if (!tx) begin",
        "        receiving <= 1;",
        "        receive_bits <= 0;",
        f"        receive_timer <= {clocks_per_bit + clocks_per_bit // 2 - 1};",
        "      end",
        "    end else if (receive_timer != 0) receive_timer <= receive_timer - 1;",
        "    else if (receive_bits != 8) begin",
        "      receive_shift <= {tx, receive_shift[7:1]};",
        "      receive_bits <= receive_bits + 1;",
        f"      receive_timer <= {clocks_per_bit - 1};",
        "    end else begin",
        "      if (receive_file != 0) begin",
        '        if (tx) $fwrite(receive_file, "%02x\\n", receive_shift);',
        '        else $fwrite(receive_file, "!!\\n");',
        "        $fflush(receive_file);",
        "      end",
        "      received <= received + 1;",
        "      receiving <= 0;",
        "    end",
        "  end",
        "endmodule",
        "`endif",
        ""])


def board_verilog(arch: ArchConfig, clocks_per_bit: int) -> str:
    """Verilog of :class:`BoardTop` (module :data:`BOARD_MODULE`; ``core`` comes from ``core.v``)."""
    text = amaranth_verilog.convert(BoardTop(arch, clocks_per_bit), name=BOARD_MODULE, emit_src=False)
    # the Icarus start-up race of core.v's always @* blocks meets the board top too
    text = trigger_combinational_blocks(text)
    return f"// spikecore board top, architecture fingerprint {arch.fingerprint()}, {clocks_per_bit} clocks per bit\n" \
        + text


def write_simulation_sources(arch: ArchConfig, clocks_per_bit: int, out_dir) -> list:
    """Write ``core.v`` and ``board.v`` (the board top and :data:`SIM_TOP`) into ``out_dir``; returns their paths."""
    from spikecore.atomic import atomic_write_bytes  # here: the models package imports torch

    out_dir = Path(out_dir)
    core = generate(arch, out_dir)
    board = out_dir / "board.v"
    atomic_write_bytes(board, (board_verilog(arch, clocks_per_bit) + simulation_top(clocks_per_bit)).encode())
    return [core, board]


# ---- clocks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pll:
    """A PLL setting: its parameters by the primitive's names, and the clock it makes."""

    parameters: dict
    output_mhz: float


def ice40_pll(input_mhz: float, output_mhz: float) -> Pll:
    """The ``SB_PLL40`` setting (``DIVR``, ``DIVF``, ``DIVQ``, ``FILTER_RANGE``) whose clock is nearest to
    ``output_mhz``, within the iCE40's limits (as ``icepll`` searches: phase detector 10 to 133 MHz, VCO 533 to
    1066 MHz)."""
    best = None
    for divr in range(16):
        pfd = input_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if best is None or abs(out - output_mhz) < abs(best.output_mhz - output_mhz):
                    # the loop filter's range by the phase detector's frequency (icepll's table)
                    filter_range = next(k for k, limit in enumerate((17, 26, 44, 66, 101, 1e9), 1) if pfd < limit)
                    best = Pll({"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}, out)
    return best


def ecp5_pll(input_mhz: float, output_mhz: float) -> Pll:
    """The ``EHXPLLL`` setting (``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``, ``CLKOP_CPHASE``), feedback from
    ``CLKOP``, whose clock is nearest to ``output_mhz`` within the ECP5's limits (as ``ecppll`` searches: phase
    detector 3.125 to 400 MHz, VCO 400 to 800 MHz)."""
    best = None
    for input_div in range(1, 129):
        pfd = input_mhz / input_div
        if not 3.125 <= pfd <= 400:
            continue
        for feedback_div in range(1, 81):
            out = pfd * feedback_div
            dividers = [div for div in range(1, 129) if 400 <= out * div <= 800]
            if dividers and (best is None or abs(out - output_mhz) < abs(best.output_mhz - output_mhz)):
                divider = dividers[len(dividers) // 2]  # the VCO in the middle of its range
                best = Pll({"CLKI_DIV": input_div, "CLKFB_DIV": feedback_div, "CLKOP_DIV": divider,
                            "CLKOP_CPHASE": divider - 1}, out)
    return best


@dataclass(frozen=True)
class Board:
    """A board ``accel board`` builds for.

    Attributes
    ----------
    name : str
        The ``--board`` value.
    title : str
    platform : type
        The ``amaranth-boards`` platform class.
    family : str
        ``ice40`` or ``ecp5``: the PLL, the Yosys and nextpnr commands, the packer.
    target : str
        The ``accel synth`` target with the same device (``spikecore.accel.flows.synth.TARGETS``): its
        capacity and its nextpnr device options.
    oscillator : str
        The platform's clock resource.
    busy_led, done_led : tuple
        ``(resource, number)`` of the LEDs.
    program : str
        The command that writes the bitstream ``{bitstream}`` into the board's configuration memory.
    seed : int
        nextpnr's placement seed unless ``accel board --seed`` gives one.
    """

    name: str
    title: str
    platform: type
    family: str
    target: str
    oscillator: str
    busy_led: tuple
    done_led: tuple
    program: str
    seed: int = 1

    @property
    def bitstream_name(self) -> str:
        return "board.bin" if self.family == "ice40" else "board.bit"

    def pll(self, output_mhz: float) -> Pll:
        """The PLL setting for ``output_mhz`` from this board's oscillator.

        Raises
        ------
        UserError
            If the PLL cannot make a clock within :data:`PLL_TOLERANCE` of ``output_mhz``.
        """
        input_mhz = self.platform().resources[(self.oscillator, 0)].clock.frequency / 1e6
        pll = (ice40_pll if self.family == "ice40" else ecp5_pll)(input_mhz, output_mhz)
        if abs(pll.output_mhz - output_mhz) > PLL_TOLERANCE * output_mhz:
            raise UserError(f"board {self.name}: its PLL cannot make clock_mhz = {output_mhz:g} from the "
                            f"{input_mhz:g} MHz oscillator (nearest {pll.output_mhz:.4g} MHz); set clock_mhz to a "
                            f"clock it makes")
        return pll


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform


BOARDS = {
    "icebreaker": Board("icebreaker", "iCEBreaker (iCE40 UP5K)", _icebreaker(), "ice40", "ice40-up5k", "clk12",
                        busy_led=("led_r", 0), done_led=("led_g", 0), program="iceprog {bitstream}",
                        # the default core with the bridge is within 2% of its 24 MHz on the UP5K: seeds 1 and 2
                        # placed it at 23.7 and 23.5 MHz, seed 3 at 24.4 MHz (nextpnr 0.11, Yosys 0.70)
                        seed=3),
    "ulx3s-85f": Board("ulx3s-85f", "ULX3S-85F (ECP5 LFE5U-85F)", _ulx3s_85f(), "ecp5", "ecp5-85", "clk25",
                       busy_led=("led", 0), done_led=("led", 1), program="openFPGALoader -b ulx3s {bitstream}"),
}


def get_board(name: str) -> Board:
    """The :class:`Board` called ``name``; a :class:`UserError` naming the boards (and the nearest name) else."""
    if name not in BOARDS:
        near = difflib.get_close_matches(name.lower(), BOARDS, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UserError(f"--board {name!r} is not a supported board ({hint}supported: {', '.join(BOARDS)})")
    return BOARDS[name]


class PlatformTop(Elaboratable):
    """:class:`BoardTop` on a board: the PLL's clock, the serial port's pins, the LEDs.

    Parameters
    ----------
    arch : accel.config.ArchConfig
    board : Board
    pll : Pll
        The clock (:meth:`Board.pll`).
    clocks_per_bit : int
        Of the serial line at the PLL's clock.
    """

    def __new__(cls, arch, board, pll, clocks_per_bit, *args, **kwargs):
        # checked before Amaranth registers the object (see BoardTop)
        check_arch(arch)
        if not isinstance(board, Board):
            raise TypeError(f"board must be a spikecore.rtl.board.Board, got {type(board).__name__}")
        if not isinstance(pll, Pll):
            raise TypeError(f"pll must be a spikecore.rtl.board.Pll, got {type(pll).__name__}")
        check_clocks_per_bit(clocks_per_bit)
        return super().__new__(cls, arch, board, pll, clocks_per_bit, *args, src_loc_at=1, **kwargs)

    def __init__(self, arch: ArchConfig, board: Board, pll: Pll, clocks_per_bit: int):
        self.arch = arch
        self.board = board
        self.pll = pll
        self.clocks_per_bit = clocks_per_bit

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        locked = Signal()
        if self.board.family == "ice40":
            # the oscillator's pad feeds the PLL directly (SB_PLL40_PAD): no global buffer in between
            pad = platform.request(self.board.oscillator, 0, dir="-")
            m.submodules.pll = Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                                        **{f"p_{k}": v for k, v in self.pll.parameters.items()},
                                        i_RESETB=1, i_BYPASS=0, io_PACKAGEPIN=pad.io,
                                        o_PLLOUTGLOBAL=sync.clk, o_LOCK=locked)
        else:
            m.submodules.oscillator = oscillator = io.Buffer("i", platform.request(self.board.oscillator, 0, dir="-"))
            m.submodules.pll = Instance(
                "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                **{f"p_{k}": v for k, v in self.pll.parameters.items()},
                i_RST=0, i_STDBY=0, i_CLKI=oscillator.i, o_CLKOP=sync.clk, i_CLKFB=sync.clk, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_LOCK=locked)
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        m.submodules.top = top = BoardTop(self.arch, self.clocks_per_bit)
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.submodules.busy_led = busy = io.Buffer("o", platform.request(*self.board.busy_led, dir="-"))
        m.submodules.done_led = done = io.Buffer("o", platform.request(*self.board.done_led, dir="-"))
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx), busy.o.eq(top.busy), done.o.eq(top.done)]
        return m
