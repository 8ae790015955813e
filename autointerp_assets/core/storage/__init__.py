from .schema import PARTITIONED, TABLES, VIEWS
from .warehouse import Warehouse

__all__ = ["PARTITIONED", "TABLES", "VIEWS", "Warehouse"]
