"""Model families: one folder each (model, data, fit, plots, plug-ins); no family imports another."""
