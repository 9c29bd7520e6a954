"""Binance spot and USDT-M futures market data: stream formats, book sync rules, exchangeInfo."""
