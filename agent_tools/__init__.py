"""agent-orders: order capture and tracking tools for conversational sales agents."""
