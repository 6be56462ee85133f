"""The daemon's stream handler in one process, with a scripted stream (no network)."""

from __future__ import annotations

import io

import trio

from p2pfl.net import transfer
from p2pfl.net.daemon import Node
from p2pfl.net.eventlog import EventLog
from p2pfl.protocol.codec import encode
from p2pfl.protocol.identity import peer_id_of
from p2pfl.settings.load import node_settings


class ScriptedStream:
    """Reads come from `incoming`; writes fail (the sender went away before the ack)."""

    class _Conn:
        def __init__(self, peer: str):
            from p2pfl.net.host import peer_id

            self.peer_id = peer_id(peer)

    def __init__(self, peer: str, incoming: bytes):
        self.muxed_conn = self._Conn(peer)
        self.incoming = memoryview(incoming)
        self.was_reset = False

    async def read(self, n: int) -> bytes:
        chunk, self.incoming = bytes(self.incoming[:n]), self.incoming[n:]
        return chunk

    async def write(self, data: bytes) -> None:
        raise ConnectionResetError("the sender closed the stream")

    async def reset(self) -> None:
        self.was_reset = True


def test_an_update_whose_ack_cannot_be_sent_still_counts(consortium):
    c = consortium(nodes=4, rounds=8)
    out = io.StringIO()
    settings = node_settings(c.configs["hospital-1"])
    from p2pfl.files.keys import load_key
    from p2pfl.files.roster_file import load_roster

    node = Node.build(settings, load_key(c.folder / "hospital-1" / "node.key"),
                      load_roster(c.folder / "roster.toml"), EventLog("hospital-1", out))
    sender = c.key("hospital-2")  # a ring neighbour of hospital-1
    claim = 7  # far ahead: held as catch-up evidence, an action the daemon must still carry out
    update = bytes(encode(sender, consortium=node.consortium, round=claim, fingerprint=node.fingerprint,
                          num_samples=1, weight=1.0, tensors=node._params()))
    stream = ScriptedStream(peer_id_of(sender), transfer.pack_header(claim, update) + update)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node.nursery = nursery
            await node._on_stream(stream)
            nursery.cancel_scope.cancel()

    trio.run(main)
    log = out.getvalue()
    assert stream.was_reset and "event=transfer_failed" in log
    assert "event=catch_up_evidence sender=hospital-2 round=7" in log
    assert peer_id_of(sender) in node.machine.claims and node.receiving[peer_id_of(sender)] == 0


def test_a_hello_is_bounded_before_it_is_read(consortium):
    from p2pfl.files.keys import load_key
    from p2pfl.files.roster_file import load_roster
    from p2pfl.net import quorum
    from p2pfl.protocol import hello

    c = consortium(nodes=3, rounds=2)
    out = io.StringIO()
    node = Node.build(node_settings(c.configs["hospital-1"]), load_key(c.folder / "hospital-1" / "node.key"),
                      load_roster(c.folder / "roster.toml"), EventLog("hospital-1", out))
    peer = peer_id_of(c.key("hospital-2"))
    huge = ScriptedStream(peer, (1 << 20).to_bytes(4, "big") + bytes(100))  # declares 1 MiB
    busy = ScriptedStream(peer, b"")
    trio.run(node._on_hello, huge)
    assert huge.was_reset and "event=hello_rejected peer=hospital-2" in out.getvalue()
    assert f"hello of 1048576 bytes exceeds the limit of {hello.MAX_SIZE}" in out.getvalue()
    node.hellos[peer] = quorum.MAX_HELLOS  # as many in progress as a peer may have
    trio.run(node._on_hello, busy)
    assert busy.was_reset and node.hellos[peer] == quorum.MAX_HELLOS


def test_a_relative_csv_path_is_read_beside_node_toml(consortium, tmp_path, monkeypatch):
    c = consortium(nodes=2, rounds=1)
    rows = "".join(f"{i * 0.1:.1f},{i % 3 * 0.5},{'yes' if i % 2 else 'no'}\n" for i in range(40))
    (c.folder / "hospital-1" / "patients.csv").write_text("a,b,outcome\n" + rows)
    c.configure("data", 'source = "csv:patients.csv"')
    c.configure("task", 'label_column = "outcome"\nclasses = ["no", "yes"]')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the daemon is started from another folder
    from p2pfl.files.keys import load_key
    from p2pfl.files.roster_file import load_roster

    node = Node.build(node_settings(c.configs["hospital-1"]), load_key(c.folder / "hospital-1" / "node.key"),
                      load_roster(c.folder / "roster.toml"), EventLog("hospital-1", io.StringIO()))
    assert len(node.data.y_train) + len(node.data.y_val) == 40
    node.state_lock.release()


def test_a_relative_sqlite_source_is_read_beside_node_toml(consortium, tmp_path, monkeypatch):
    import sqlite3

    c = consortium(nodes=2, rounds=1)
    with sqlite3.connect(c.folder / "hospital-1" / "ehr.db") as conn:
        conn.execute("CREATE TABLE visits (id INTEGER, a REAL, b REAL, outcome TEXT)")
        conn.executemany("INSERT INTO visits VALUES (?, ?, ?, ?)",
                         [(i, i * 0.1, i % 3 * 0.5, "yes" if i % 2 else "no") for i in range(40)])
    conn.close()
    c.configure("data", 'source = "sql:sqlite:///ehr.db"\n'
                'sql_query = "SELECT a, b, outcome FROM visits WHERE id < 30 ORDER BY id"')
    c.configure("task", 'label_column = "outcome"\nclasses = ["no", "yes"]')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the daemon is started from another folder
    from p2pfl.files.keys import load_key
    from p2pfl.files.roster_file import load_roster

    node = Node.build(node_settings(c.configs["hospital-1"]), load_key(c.folder / "hospital-1" / "node.key"),
                      load_roster(c.folder / "roster.toml"), EventLog("hospital-1", io.StringIO()))
    assert len(node.data.y_train) + len(node.data.y_val) == 30 and node.data.n_features == 2
    assert not (elsewhere / "ehr.db").exists()
    node.state_lock.release()
