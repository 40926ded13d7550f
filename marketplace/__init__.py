"""StratusLab-style appliance marketplace: metadata core, store and web service."""
