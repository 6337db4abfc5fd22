'use strict';
// The shop app of tests/apps/scenario.py on Mongoose.
//
//   node mongoose_app.js <uri> run <{who, seed, scenario...} as JSON>
//   node mongoose_app.js <uri> bump <{seed, positional_order} as JSON>
//
// The URI names the database and, for a branch, `appName=argon:<branch>`.
// `run` exercises the app; `bump` adds one A to order 1 with a positional update.
// The last line printed is the result as JSON.

const mongoose = require('mongoose');

const { Schema } = mongoose;

class Abort extends Error {}

const itemSchema = new Schema(
  {
    sku: { type: String, required: true },
    qty: { type: Number, required: true, min: 1 },
    price: { type: Number, required: true, min: 0 },
  },
  { _id: false },
);

const userSchema = new Schema(
  {
    email: { type: String, required: true, unique: true },
    name: { type: String, required: true },
    visits: { type: Number, default: 0 },
    orders_placed: { type: Number, default: 0 },
  },
  { collection: 'users' },
);

const orderSchema = new Schema(
  {
    number: { type: Number, required: true, unique: true },
    user: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    items: [itemSchema],
    status: { type: String, required: true, enum: ['pending', 'paid', 'shipped'] },
    total: { type: Number, required: true },
  },
  { collection: 'orders' },
);
orderSchema.index({ user: 1, number: -1 });
orderSchema.index({ status: 1 });

const items = (lines) => lines.map(([sku, qty, price]) => ({ sku, qty, price }));
const total = (lines) => lines.reduce((sum, [, qty, price]) => sum + qty * price, 0);

async function main() {
  const [uri, action, argsJson] = process.argv.slice(2);
  const args = JSON.parse(argsJson);
  const conn = await mongoose
    .createConnection(uri, { serverSelectionTimeoutMS: 30000 })
    .asPromise();
  try {
    const User = conn.model('User', userSchema);
    const Order = conn.model('Order', orderSchema);
    // Creates the collections and the schemas' indexes.
    await User.init();
    await Order.init();
    if (action === 'run') return await app(conn, User, Order, args);
    if (action === 'bump') return await bump(User, Order, args);
    throw new Error(`unknown action ${action}`);
  } finally {
    await conn.close();
  }
}

const newOrder = (number, user, status, lines) => ({
  number,
  user: user._id,
  status,
  items: items(lines),
  total: total(lines),
});

async function bump(User, Order, { seed, positional_order: lines }) {
  if (seed) {
    const alice = await User.create({ email: 'alice@example.com', name: 'Alice' });
    await Order.create(newOrder(1, alice, 'pending', lines));
  }
  await Order.updateOne({ number: 1, 'items.sku': 'A' }, { $inc: { 'items.$.qty': 1 } });
  return (await Order.findOne({ number: 1 })).items.map((i) => i.qty);
}

async function app(conn, User, Order, { who, seed, scenario }) {
  const nextNumber = async () => {
    const last = await Order.findOne().sort({ number: -1 }).select('number');
    return last === null ? 1 : last.number + 1;
  };

  if (seed) {
    const users = {};
    for (const [email, name, placed] of scenario.seed_users) {
      users[email] = await User.create({ email, name, orders_placed: placed });
    }
    for (const [number, email, status, lines] of scenario.seed_orders) {
      await Order.create(newOrder(number, users[email], status, lines));
    }
  }

  let me = await User.create({ email: `${who}@example.com`, name: who });
  me.name = scenario.renamed;
  await me.save();

  const keyOf = (e) => (e.code === 11000 ? e.keyValue : { code: e.code, message: e.message });
  let dupKey = null;
  try {
    await User.create({ email: 'alice@example.com', name: 'Impostor' });
  } catch (e) {
    dupKey = keyOf(e);
  }
  let dupUpdateKey = null;
  me.email = 'bob@example.com';
  try {
    await me.save();
  } catch (e) {
    dupUpdateKey = keyOf(e);
  }
  me = await User.findById(me._id);

  const alice = await User.findOneAndUpdate(
    { email: 'alice@example.com' },
    { $inc: { visits: 1 } },
    { returnDocument: 'after' },
  );

  const first = await nextNumber();
  const newNumbers = [];
  for (const [i, lines] of scenario.new_orders.entries()) {
    newNumbers.push((await Order.create(newOrder(first + i, me, 'pending', lines))).number);
  }

  const top = await Order.find({ status: 'pending' }).sort({ total: -1, number: -1 }).limit(2);
  const pendingTop2 = top.map((o) => o.number);

  const skus = await Order.aggregate([
    { $unwind: '$items' },
    { $group: { _id: '$items.sku', qty: { $sum: '$items.qty' } } },
    { $sort: { _id: 1 } },
    { $project: { _id: 0, sku: '$_id', qty: 1 } },
  ]);

  const order = await Order.findOne({ number: newNumbers[1] }).populate('user');
  const populated = { number: order.number, email: order.user.email, name: order.user.name };

  const shipped = await Order.updateMany({ status: 'paid' }, { $set: { status: 'shipped' } });

  const lowest = await Order.findOne({ status: 'pending' }).sort({ number: 1 });
  const deleted = lowest.number;
  await lowest.deleteOne();

  const bob = await User.findOne({ email: 'bob@example.com' });
  const checkout = async (user, number, lines, abort) => {
    let seen = null;
    await conn.transaction(async (session) => {
      await Order.create([newOrder(number, user, 'paid', lines)], { session });
      await User.updateOne({ _id: user._id }, { $inc: { orders_placed: 1 } }, { session });
      seen = (await User.findById(user._id).session(session)).orders_placed;
      if (abort) throw new Abort('abandoned');
    });
    return seen;
  };
  const committed = await nextNumber();
  const inTxn = await checkout(alice, committed, scenario.committed_items, false);
  try {
    await checkout(bob, committed + 1, scenario.aborted_items, true);
    throw new Error('the aborted checkout returned');
  } catch (e) {
    if (!(e instanceof Abort)) throw e;
  }
  const abortedVisible = (await Order.countDocuments({ number: committed + 1 })) > 0;
  const paid = await Order.findOne({ number: committed }).populate('user');
  if (!paid.user._id.equals(alice._id)) throw new Error(`order ${committed} is not alice's`);

  const numbers = [];
  for await (const o of Order.find().sort({ number: 1 }).batchSize(2).cursor()) {
    numbers.push(o.number);
  }

  return {
    dup_key: dupKey,
    dup_update_key: dupUpdateKey,
    alice_visits: alice.visits,
    new_numbers: newNumbers,
    pending_top2: pendingTop2,
    skus,
    populated,
    shipped: shipped.modifiedCount,
    deleted,
    committed,
    in_txn_orders_placed: inTxn,
    aborted_visible: abortedVisible,
    bob_orders_placed: (await User.findById(bob._id)).orders_placed,
    numbers,
    users: await User.countDocuments(),
    orders: await Order.countDocuments(),
  };
}

main().then(
  (result) => console.log(JSON.stringify(result)),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
