export const options = { thresholds: { wallet_not_defined: ['count<1'] } };
export default function () {}
