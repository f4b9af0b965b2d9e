"""The test kit: what tests and the bench use to start, drive and check the probe against the emulator.

- `process`: processes in groups of their own (stopped by group only), free ports, waiting on conditions.
- `emulator`: the emulator's HTTP client (faults, truth), in a process or a thread.
- `probe`: the probe's commands and processes, and the store and metrics they leave.
- `stack`: a whole supervised stack (`probe run`) against an emulator.
- `truth`: the state the emulator's truth implies for each event.
- `http_stub`, `hostile`: small scripted and hostile peers on loopback.

Runtime code never imports it (`probe run --with-emulator` uses `emulator.launch`, as the kit does).
"""
