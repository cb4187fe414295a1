"""Writes a kline archive in Binance's public-data format (monthly `SYMBOL-1h-YYYY-MM.zip` with `.CHECKSUM`,
epoch milliseconds as before 2025), from a seeded random walk: a stand-in for real exchange history that a test or
a person can make without a download.

    python tests/kline_archive.py DIR --start 2018-01-01 --days 200 --symbols BTCUSDT,ETHUSDT --delist ETHUSDT:150
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np


def write_archive(
    directory: Path,
    symbols: list[str],
    start: datetime,
    hours: int,
    seed: int = 1,
    ends: dict[str, int] | None = None,
) -> list[Path]:
    """Hourly klines for each symbol from `start` for `hours` (or `ends[symbol]` hours: a delisted symbol's last
    monthly file stops mid-month), with fat-tailed, volatility-clustered returns; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, symbol in enumerate(symbols):
        rng = np.random.default_rng([seed, index])
        n = (ends or {}).get(symbol, hours)
        shocks = rng.standard_t(4, n) / np.sqrt(2.0)
        variance, sigma = 1.0, np.empty(n)
        for t in range(n):  # GARCH(1,1) around an hourly volatility of 0.8%
            sigma[t] = 0.008 * np.sqrt(variance)
            variance = 0.05 + 0.07 * shocks[t] ** 2 + 0.88 * variance
        returns = sigma * shocks
        close = (100.0 * (index + 1)) * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0] / np.exp(returns[0])], close[:-1]])
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.5, n)) * sigma)
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.5, n)) * sigma)
        volume = rng.lognormal(6.0, 0.5, n) * (1 + 20 * np.abs(returns))
        trades = np.maximum(1, (volume * rng.uniform(0.5, 1.5, n)).astype(int))
        taker = volume * rng.uniform(0.3, 0.7, n)
        by_month: dict[tuple[int, int], list[str]] = {}
        for t in range(n):
            ts = start + timedelta(hours=t)
            ms = int(ts.timestamp() * 1000)
            fields = [
                str(ms), f"{open_[t]:.8f}", f"{high[t]:.8f}", f"{low[t]:.8f}", f"{close[t]:.8f}",
                f"{volume[t]:.8f}", str(ms + 3_599_999), f"{volume[t] * close[t]:.8f}", str(trades[t]),
                f"{taker[t]:.8f}", f"{taker[t] * close[t]:.8f}", "0",
            ]  # fmt: skip
            by_month.setdefault((ts.year, ts.month), []).append(",".join(fields))
        for (year, month), lines in by_month.items():
            name = f"{symbol}-1h-{year:04d}-{month:02d}.zip"
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
                bundle.writestr(name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
            path = directory / name
            path.write_bytes(buffer.getvalue())
            (directory / f"{name}.CHECKSUM").write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  {name}\n")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--start", default="2018-01-01")
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,BNBUSDT,XRPUSDT,LTCUSDT")
    parser.add_argument("--delist", default="", help="SYMBOL:DAYS, a symbol whose history stops early")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ends = {}
    if args.delist:
        symbol, days = args.delist.split(":")
        ends[symbol] = int(days) * 24
    start = datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=UTC)
    files = write_archive(args.directory, args.symbols.split(","), start, args.days * 24, args.seed, ends)
    print(f"{len(files)} files in {args.directory}")


if __name__ == "__main__":
    main()
