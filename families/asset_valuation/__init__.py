"""asset-valuation: gradient boosting regression of a value (price, yield) with calibrated intervals."""
